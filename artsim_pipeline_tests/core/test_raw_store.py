from artsim_pipeline.core.raw_store import FetchResult, merge_results


def ok(source_id, text):
    return FetchResult(source_id, "ok", raw_json=text, modified="2024-01-01")


def test_upsert_never_duplicates_and_counts_changes():
    table, counts = merge_results(None, [ok("1", '{"a":1}'), ok("2", '{"a":2}')])
    assert table["source_id"].to_list() == ["1", "2"] and counts.new == 2
    table2, counts2 = merge_results(table, [ok("1", '{"a":1}'), ok("2", '{"a":3}'), ok("3", '{"a":4}')])
    assert table2.height == 3
    assert (counts2.new, counts2.changed, counts2.unchanged) == (1, 1, 1)
    assert table2.filter(table2["source_id"] == "2")["raw_json"].item() == '{"a":3}'


def test_an_error_never_overwrites_a_stored_record():
    table, _ = merge_results(None, [ok("1", '{"a":1}')])
    table2, counts = merge_results(table, [FetchResult("1", "error", error="HTTP 500")])
    assert counts.error == 1
    row = table2.row(0, named=True)
    assert row["status"] == "ok" and row["raw_json"] == '{"a":1}'


def test_gone_keeps_the_last_good_text_and_full_listing_marks_missing_ids_gone():
    table, _ = merge_results(None, [ok("1", '{"a":1}'), ok("2", '{"a":2}'), ok("3", '{"a":3}')])
    table2, counts = merge_results(table, [FetchResult("1", "gone", error="HTTP 404: Not a valid object")], full_listing_ids={"1", "3"})
    rows = {r["source_id"]: r for r in table2.iter_rows(named=True)}
    assert rows["1"]["status"] == "gone" and rows["1"]["raw_json"] == '{"a":1}'
    assert rows["2"]["status"] == "gone" and "no longer listed" in rows["2"]["error"]
    assert rows["3"]["status"] == "ok"
    assert counts.gone == 2
