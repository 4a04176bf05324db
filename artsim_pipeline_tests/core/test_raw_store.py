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


# -- the vectorised merge against the per-row implementation it replaced ---------------------------------

import random  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

import polars as pl  # noqa: E402
import pytest  # noqa: E402

from artsim_pipeline.core.raw_store import RAW_OBJECTS_SCHEMA, MergeCounts, empty_raw_objects, merge_changes  # noqa: E402


def reference_merge_results(previous, results, *, full_listing_ids=None):
    """The per-row merge (a Python dict of every stored row) as it was before vectorisation."""
    counts = MergeCounts()
    rows = {}
    if previous is not None and previous.height:
        for row in previous.iter_rows(named=True):
            rows[row["source_id"]] = row
    seen = set()
    for result in results:
        if result.source_id in seen:
            continue
        seen.add(result.source_id)
        counts.text_repairs += result.text_repairs
        old = rows.get(result.source_id)
        if result.status == "ok":
            new_hash = result.content_hash
            if old is not None and old["status"] == "ok" and old["content_hash"] == new_hash:
                counts.unchanged += 1
                continue
            if old is None or old["raw_json"] is None:
                counts.new += 1
            else:
                counts.changed += 1
            rows[result.source_id] = {"source_id": result.source_id, "raw_json": result.raw_json, "fetched_at": result.fetched_at,
                                      "content_hash": new_hash, "status": "ok", "error": None, "modified": result.modified,
                                      "first_seen_at": old["first_seen_at"] if old else result.fetched_at}
        elif result.status == "gone":
            if old is None or old["status"] != "gone":
                counts.gone += 1
            rows[result.source_id] = {**(old or {"source_id": result.source_id, "raw_json": None, "content_hash": None, "modified": None,
                                                 "first_seen_at": result.fetched_at}),
                                      "fetched_at": result.fetched_at, "status": "gone", "error": result.error}
        else:
            counts.error += 1
            if old is not None and old["raw_json"] is not None and old["status"] != "error":
                continue
            rows[result.source_id] = {"source_id": result.source_id,
                                      "raw_json": result.raw_json if result.raw_json is not None else (old or {}).get("raw_json"),
                                      "fetched_at": result.fetched_at,
                                      "content_hash": result.content_hash if result.raw_json is not None else (old or {}).get("content_hash"),
                                      "status": "error", "error": result.error, "modified": None,
                                      "first_seen_at": old["first_seen_at"] if old else result.fetched_at}
    if full_listing_ids is not None:
        now = datetime.now(timezone.utc)
        for source_id, row in rows.items():
            if source_id not in full_listing_ids and row["status"] == "ok":
                counts.gone += 1
                rows[source_id] = {**row, "status": "gone", "error": "no longer listed by the API", "fetched_at": now}
    table = pl.DataFrame(list(rows.values()), schema=RAW_OBJECTS_SCHEMA) if rows else empty_raw_objects()
    return table.sort("source_id"), counts


def random_batch(rng: random.Random, ids: list[str], n: int, day: int) -> list[FetchResult]:
    at = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=day)
    out = []
    for _ in range(n):
        source_id = rng.choice(ids)
        kind = rng.random()
        if kind < 0.55:
            out.append(FetchResult(source_id, "ok", raw_json=f'{{"v":{rng.randrange(3)},"id":"{source_id}"}}',
                                   modified=f"2024-{rng.randrange(1, 13):02d}", fetched_at=at))
        elif kind < 0.7:
            out.append(FetchResult(source_id, "gone", error="HTTP 404", fetched_at=at))
        elif kind < 0.85:
            out.append(FetchResult(source_id, "error", error="HTTP 500", fetched_at=at))
        else:  # an unparseable body kept beside its reason, sometimes with a repaired byte
            out.append(FetchResult(source_id, "error", raw_json="[[[" + "x" * rng.randrange(3), error="nested", fetched_at=at,
                                   text_repairs=rng.randrange(2)))
    return out


def same_up_to_the_listing_clock(a: pl.DataFrame, b: pl.DataFrame) -> None:
    """The rows a full listing marks gone are stamped with the time of the merge: compare the rest."""
    unlisted = pl.col("error") == "no longer listed by the API"
    assert a.schema == b.schema
    assert a.drop("fetched_at").equals(b.drop("fetched_at"))
    assert a.filter(~unlisted.fill_null(False))["fetched_at"].equals(b.filter(~unlisted.fill_null(False))["fetched_at"])


@pytest.mark.parametrize("seed", range(12))
def test_the_vectorised_merge_gives_the_table_and_counts_of_the_per_row_merge(seed):
    rng = random.Random(seed)
    ids = [str(i) for i in range(60)]
    ours = reference = None
    for day in range(6):  # a stored table built over several runs, so every old/new combination occurs
        batch = random_batch(rng, ids, rng.randrange(0, 80), day)
        listing = set(rng.sample(ids, 45)) if rng.random() < 0.4 else None
        reference, expected_counts = reference_merge_results(reference, batch, full_listing_ids=listing)
        ours, counts = merge_results(ours, batch, full_listing_ids=listing)
        assert counts == expected_counts, (seed, day)
        same_up_to_the_listing_clock(ours, reference)
        ours = reference  # continue both from the same stored table (the clock of the listing aside)


def test_merge_changes_returns_only_the_rows_a_run_changes():
    table, _ = merge_results(None, [ok(str(i), f'{{"a":{i}}}') for i in range(100)])
    changes, counts = merge_changes(table, [ok("1", '{"a":1}'), ok("2", '{"a":"two"}'), ok("100", '{"a":100}'),
                                            FetchResult("3", "error", error="HTTP 500"), FetchResult("4", "gone", error="HTTP 404")])
    assert sorted(changes["source_id"]) == ["100", "2", "4"]  # unchanged and the failed fetch write nothing
    assert (counts.new, counts.changed, counts.unchanged, counts.error, counts.gone) == (1, 1, 1, 1, 1)
    gone = changes.filter(pl.col("source_id") == "4").row(0, named=True)
    assert gone["raw_json"] == '{"a":4}' and gone["first_seen_at"] == table.filter(pl.col("source_id") == "4")["first_seen_at"].item()
