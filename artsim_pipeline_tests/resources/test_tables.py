"""`TableStore` upserts (`resources/tables.py`): a run that changes k rows writes a delta of k
rows beside the compacted base, reads merge them (the last row of a key wins, deletes are rows),
compaction folds them into the base, and a crash at any step loses nothing (the S3 form:
`prod/test_s3_storage.py`)."""

from __future__ import annotations

import hashlib
import io

import polars as pl
import pytest

from artsim_pipeline.resources.objects import LocalObjectStore
from artsim_pipeline.resources.tables import COVERS_META, TableStore


def frame(ids, version="a"):
    """Rows whose text does not compress away (like records' JSON), `<version><id>:<digest>`."""
    return pl.DataFrame({"source_id": [str(i) for i in ids],
                         "text": [f"{version}{i}:{hashlib.sha256(f'{version}{i}'.encode()).hexdigest()}" for i in ids]},
                        schema={"source_id": pl.String(), "text": pl.String()})


def text_of(table: pl.DataFrame, source_id: str) -> str:
    return table.filter(pl.col("source_id") == source_id)["text"].item().split(":")[0]


def delta_files(store: TableStore, partition="met") -> list[str]:
    return list(store.objects.list_keys(store.deltas_prefix("raw_objects", partition)))


@pytest.fixture
def store(tmp_path) -> TableStore:
    return TableStore(base_dir=str(tmp_path / "storage"), compact_fraction=0.25, max_deltas=8)


def test_the_first_upsert_writes_the_base_at_the_contract_path_and_later_ones_write_only_their_rows(store, tmp_path):
    first = store.upsert_table(frame(range(1000)), ["source_id"], "raw_objects", "met")
    assert first.compacted and first.rows_written == 1000 and delta_files(store) == []
    base = tmp_path / "storage" / "raw_objects" / "met.parquet"
    assert pl.read_parquet(base).equals(frame(range(1000)).sort("source_id"))

    second = store.upsert_table(frame([5, 1000], "b"), ["source_id"], "raw_objects", "met")
    assert not second.compacted and second.rows_written == 2 and second.deltas == 1
    assert second.bytes_written < base.stat().st_size / 10  # O(k), not the whole table again
    assert pl.read_parquet(base).height == 1000  # the base is untouched
    table = store.read_table("raw_objects", "met")
    assert table.height == 1001 and table["source_id"].is_unique().all()
    assert text_of(table, "5") == "b5"
    assert table["source_id"].to_list() == sorted(table["source_id"].to_list())
    assert table.schema == frame([1]).schema


def test_deleted_keys_are_rows_and_the_last_row_of_a_key_wins(store):
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    store.upsert_table(frame([1, 2], "b"), ["source_id"], "raw_objects", "met")
    store.upsert_table(frame([2], "c"), ["source_id"], "raw_objects", "met",
                       deleted=pl.DataFrame({"source_id": ["3", "1"]}))
    table = store.read_table("raw_objects", "met")
    assert table.height == 98 and not table["source_id"].is_in(["1", "3"]).any()
    assert text_of(table, "2") == "c2"
    store.upsert_table(frame([3], "d"), ["source_id"], "raw_objects", "met")  # a deleted key can come back
    assert text_of(store.read_table("raw_objects", "met"), "3") == "d3"


def test_a_read_of_some_columns_merges_deltas_and_deletions_like_a_whole_read(store):
    with_status = lambda f, status: f.with_columns(pl.lit(status).alias("status"))  # noqa: E731
    store.upsert_table(with_status(frame(range(50)), "ok"), ["source_id"], "raw_objects", "met")
    store.upsert_table(with_status(frame([1, 2, 60], "b"), "error"), ["source_id"], "raw_objects", "met",
                       deleted=pl.DataFrame({"source_id": ["3"]}))
    whole = store.read_table("raw_objects", "met")
    status = store.read_table("raw_objects", "met", columns=["status"])
    assert status.columns == ["status"] and status.equals(whole.select("status"))
    assert status["status"].value_counts().sort("status").rows() == [("error", 3), ("ok", 47)]
    assert store.read_table("raw_objects", "met", columns=["text", "source_id"]).equals(whole.select("text", "source_id"))
    assert store.read_table("raw_objects", "met", columns=["status", "status"]).equals(status)
    # a column the deltas brought and the base does not have yet: null for the base's rows
    store.upsert_table(frame([7]).with_columns(pl.lit("x").alias("added")), ["source_id"], "raw_objects", "met")
    added = store.read_table("raw_objects", "met", columns=["added"])
    assert added.equals(store.read_table("raw_objects", "met").select("added"))
    assert added["added"].drop_nulls().to_list() == ["x"] and added.height == 50
    store.write_table(frame(range(5)), "weak_pairs")  # a table written whole
    assert store.read_table("weak_pairs", columns=["source_id"]).equals(frame(range(5)).select("source_id"))
    with pytest.raises(pl.exceptions.ColumnNotFoundError):
        store.read_table("weak_pairs", columns=["no_such_column"])


def test_nothing_changed_writes_nothing(store):
    store.upsert_table(frame(range(10)), ["source_id"], "raw_objects", "met")
    report = store.upsert_table(frame([]), ["source_id"], "raw_objects", "met")
    assert report.rows_written == report.bytes_written == 0 and delta_files(store) == []


def test_deltas_past_the_fraction_of_the_base_are_compacted_and_removed(store):
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    reports = [store.upsert_table(frame(range(i * 10, i * 10 + 10), f"v{i}"), ["source_id"], "raw_objects", "met") for i in range(3)]
    assert [r.compacted for r in reports] == [False, False, True]  # 30 rows > 0.25 x 100
    assert delta_files(store) == []
    table = store.read_table("raw_objects", "met")
    assert table.equals(pl.concat([frame(range(0, 10), "v0"), frame(range(10, 20), "v1"), frame(range(20, 30), "v2"),
                                   frame(range(30, 100))]).sort("source_id"))


def test_a_crash_between_the_new_base_and_the_removal_of_its_deltas_loses_nothing_and_repeats_nothing(store, monkeypatch):
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    store.upsert_table(frame(range(10), "b"), ["source_id"], "raw_objects", "met")
    monkeypatch.setattr(LocalObjectStore, "delete", lambda self, key: None)  # the process dies before removing them
    store.upsert_table(frame(range(0, 30), "c"), ["source_id"], "raw_objects", "met")  # compacts, over the same keys
    monkeypatch.undo()
    assert len(delta_files(store)) == 1  # left behind, already held by the base: it must not undo "c"
    expected = pl.concat([frame(range(0, 30), "c"), frame(range(30, 100))]).sort("source_id")
    assert store.read_table("raw_objects", "met").equals(expected)
    # a later change to the same keys is not undone by the stale delta
    store.upsert_table(frame([0], "d"), ["source_id"], "raw_objects", "met")
    assert text_of(store.read_table("raw_objects", "met"), "0") == "d0"


def test_a_crash_before_the_base_is_replaced_keeps_the_old_base_and_every_delta(store, monkeypatch):
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    store.upsert_table(frame(range(10), "b"), ["source_id"], "raw_objects", "met")
    real_write = LocalObjectStore.write_bytes

    def dies_on_the_base(self, key, data):
        if key.endswith("met.parquet"):
            raise OSError("killed")
        real_write(self, key, data)

    monkeypatch.setattr(LocalObjectStore, "write_bytes", dies_on_the_base)
    with pytest.raises(OSError):
        store.upsert_table(frame(range(10, 30), "c"), ["source_id"], "raw_objects", "met")
    monkeypatch.undo()
    expected = pl.concat([frame(range(10), "b"), frame(range(10, 100))]).sort("source_id")
    assert store.read_table("raw_objects", "met").equals(expected)


def test_a_whole_new_value_covers_the_deltas_and_a_legacy_base_is_compacted_on_its_first_upsert(store, tmp_path):
    store.write_table(frame(range(50)), "raw_objects", "met")  # a table stored before upserts existed
    report = store.upsert_table(frame([1], "b"), ["source_id"], "raw_objects", "met")
    assert report.compacted  # its base had no upsert key: rewritten once, with it
    store.upsert_table(frame([2], "b"), ["source_id"], "raw_objects", "met")
    assert len(delta_files(store)) == 1
    store.write_table(frame(range(5), "z"), "raw_objects", "met")  # e.g. a test or a repair writes the table whole
    assert store.read_table("raw_objects", "met").equals(frame(range(5), "z").sort("source_id"))
    assert delta_files(store) == []
    metadata = pl.read_parquet_metadata(io.BytesIO((tmp_path / "storage" / "raw_objects" / "met.parquet").read_bytes()))
    assert int(metadata[COVERS_META]) >= 1


def test_tables_written_whole_keep_their_layout_and_list_nothing(store, tmp_path, monkeypatch):
    store.write_table(frame(range(3)), "artworks", "met")
    listed = []
    real_list = LocalObjectStore.list_keys
    monkeypatch.setattr(LocalObjectStore, "list_keys", lambda self, prefix: listed.append(prefix) or real_list(self, prefix))
    assert store.read_table("artworks", "met").equals(frame(range(3)))
    assert listed == []  # a table that is not upserted is read without looking for deltas
    assert sorted(p.name for p in (tmp_path / "storage" / "artworks").iterdir()) == ["met.parquet"]


def test_a_read_that_meets_a_compaction_reads_the_new_base(store, monkeypatch):
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    store.upsert_table(frame([1], "b"), ["source_id"], "raw_objects", "met")
    real_read = LocalObjectStore.read_bytes

    def compaction_in_between(self, key):
        if ".deltas/" in key:  # the reader listed the delta; another run compacts before it reads it
            monkeypatch.setattr(LocalObjectStore, "read_bytes", real_read)
            assert store.upsert_table(frame(range(50), "c"), ["source_id"], "raw_objects", "met").compacted
        return real_read(self, key)

    monkeypatch.setattr(LocalObjectStore, "read_bytes", compaction_in_between)
    table = store.read_table("raw_objects", "met")
    assert table.height == 100 and text_of(table, "1") == "c1" and text_of(table, "60") == "a60"


def test_a_compaction_between_reading_the_base_and_listing_the_deltas_is_not_missed(store, monkeypatch):
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    store.upsert_table(frame([1], "b"), ["source_id"], "raw_objects", "met")
    real_list = LocalObjectStore.list_keys

    def compaction_before_listing(self, prefix):
        # the reader has the old base; another run compacts (new base, deltas removed) before it lists
        monkeypatch.setattr(LocalObjectStore, "list_keys", real_list)
        assert store.upsert_table(frame(range(50), "c"), ["source_id"], "raw_objects", "met").compacted
        return real_list(self, prefix)

    monkeypatch.setattr(LocalObjectStore, "list_keys", compaction_before_listing)
    table = store.read_table("raw_objects", "met")
    assert table.height == 100 and text_of(table, "1") == "c1" and text_of(table, "40") == "c40" and text_of(table, "60") == "a60"


# -- several writers of one table at once (two UI runs of one partition) ------------------------------


def writer(tmp_path) -> TableStore:
    """Another process's store over the same files (its own object store, its own listing)."""
    return TableStore(base_dir=str(tmp_path / "storage"), compact_fraction=0.25, max_deltas=8)


def after_first_listing(store: TableStore, action) -> None:
    """Run `action` (another writer) right after `store` first lists the table's deltas: the
    moment it has chosen a delta number and has not yet written it."""
    real_list = store.objects.list_keys
    calls = []

    def listing(prefix):
        keys = list(real_list(prefix))
        if not calls:
            calls.append(prefix)
            action()
        return iter(keys)

    store.objects.list_keys = listing


def test_a_writer_whose_delta_number_was_taken_meanwhile_takes_the_next(store, tmp_path):
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    other = writer(tmp_path)
    after_first_listing(store, lambda: other.upsert_table(frame([500], "x"), ["source_id"], "raw_objects", "met"))
    report = store.upsert_table(frame([600], "w"), ["source_id"], "raw_objects", "met")  # the same number, the same size
    assert not report.compacted and report.deltas == 2
    assert [key.rsplit("/", 1)[1] for key in delta_files(store)] == ["0000000001-1.parquet", "0000000002-1.parquet"]
    table = store.read_table("raw_objects", "met")
    assert table.height == 102 and text_of(table, "500") == "x500" and text_of(table, "600") == "w600"


def test_a_delta_numbered_under_a_compaction_that_did_not_read_it_is_written_again(store, tmp_path):
    """Writer W lists (next number 1); X writes delta 1 (other rows); a compaction reads it, covers 1
    and removes it; W's delta 1 then lands under `covers`, where reads ignore it. W must notice."""
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    other, compactor = writer(tmp_path), writer(tmp_path)

    def x_then_a_compaction():
        other.upsert_table(frame([500, 501], "x"), ["source_id"], "raw_objects", "met")
        assert compactor.upsert_table(frame(range(30), "c"), ["source_id"], "raw_objects", "met").compacted

    after_first_listing(store, x_then_a_compaction)
    store.upsert_table(frame([600], "w"), ["source_id"], "raw_objects", "met")
    table = store.read_table("raw_objects", "met")
    assert table.height == 103
    assert text_of(table, "600") == "w600" and text_of(table, "501") == "x501" and text_of(table, "5") == "c5"


def after_delta_written(store: TableStore, action) -> None:
    """Run `action` (other writers) right after `store` has created its delta and before it checks
    whether a compaction covered it (its second listing of the deltas)."""
    real_list = store.objects.list_keys
    calls = []

    def listing(prefix):
        keys = list(real_list(prefix))
        calls.append(prefix)
        if len(calls) == 2:
            action()
        return iter(keys)

    store.objects.list_keys = listing


def test_a_delta_a_compaction_merged_is_not_written_again_over_a_later_deletion(store, tmp_path):
    """W creates its delta (row 500); C compacts, reading W's delta; B then deletes 500. W, seeing
    its number covered, must find its delta among the base's merged ones and not write 500 again."""
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    compactor, deleter = writer(tmp_path), writer(tmp_path)

    def merge_then_delete():
        assert compactor.upsert_table(frame(range(40, 70), "c"), ["source_id"], "raw_objects", "met").compacted
        assert text_of(compactor.read_table("raw_objects", "met"), "500") == "w500"  # merged W's delta
        deleter.upsert_table(frame([]), ["source_id"], "raw_objects", "met", deleted=pl.DataFrame({"source_id": ["500"]}))

    after_delta_written(store, merge_then_delete)
    report = store.upsert_table(frame([500], "w"), ["source_id"], "raw_objects", "met")
    assert report.rows_written == 1 and not report.compacted
    table = writer(tmp_path).read_table("raw_objects", "met")
    assert "500" not in table["source_id"].to_list() and table.height == 100
    assert text_of(table, "50") == "c50"


def test_a_compaction_keeps_a_delta_written_after_it_listed_them(store, tmp_path):
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    store.upsert_table(frame([1], "b"), ["source_id"], "raw_objects", "met")
    other = writer(tmp_path)
    real_read = store.objects.read_bytes
    written = []

    def delta_written_while_merging(key):
        if ".deltas/" in key and not written:  # the compaction has listed the deltas and reads them
            written.append(other.upsert_table(frame([700], "late"), ["source_id"], "raw_objects", "met"))
        return real_read(key)

    store.objects.read_bytes = delta_written_while_merging
    assert store.upsert_table(frame(range(10, 40), "c"), ["source_id"], "raw_objects", "met").compacted
    assert written and not written[0].compacted
    table = store.read_table("raw_objects", "met")
    assert text_of(table, "700") == "late700" and text_of(table, "1") == "b1" and text_of(table, "20") == "c20"


def test_a_compaction_does_not_replace_a_base_stored_since_it_read_it(store, tmp_path):
    """Two compactions at once: the one that stores its base second must not drop the first's rows."""
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    other = writer(tmp_path)
    real_read = store.objects.read_bytes
    done = []

    def another_compaction_after_the_base_is_read(key):
        data = real_read(key)
        if key.endswith("met.parquet") and not done:
            done.append(other.upsert_table(frame(range(200, 240), "o"), ["source_id"], "raw_objects", "met"))
        return data

    store.objects.read_bytes = another_compaction_after_the_base_is_read
    assert store.upsert_table(frame(range(50, 90), "s"), ["source_id"], "raw_objects", "met").compacted
    assert done and done[0].compacted
    table = store.read_table("raw_objects", "met")
    assert table.height == 140 and text_of(table, "210") == "o210" and text_of(table, "60") == "s60"


RACE_WRITERS, RACE_ROUNDS = 6, 12


def race(store: TableStore, number: int, start=None, rounds: int = RACE_ROUNDS) -> None:
    """One writer: each round a new key of its own and a new value for an existing key of its own."""
    for r in range(rounds):
        if start is not None:
            start()
        changed = [f"n{number}-{r}", str(number * rounds + r)]
        store.upsert_table(frame(changed, f"w{number}r{r}-"), ["source_id"], "raw_objects", "met")


def expect_every_writers_rows(table: pl.DataFrame, writers: int, rounds: int, base_rows: int) -> None:
    assert table["source_id"].is_unique().all()
    assert table.height == base_rows + writers * rounds
    for w in range(writers):
        for r in range(rounds):
            assert text_of(table, f"n{w}-{r}") == f"w{w}r{r}-n{w}-{r}"
            assert text_of(table, str(w * rounds + r)) == f"w{w}r{r}-{w * rounds + r}"


def test_threads_racing_on_one_table_lose_no_row(tmp_path):
    import threading

    writer(tmp_path).upsert_table(frame(range(200)), ["source_id"], "raw_objects", "met")
    barrier = threading.Barrier(RACE_WRITERS)
    errors = []

    def run(number):
        try:
            race(writer(tmp_path), number, start=barrier.wait)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(RACE_WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    expect_every_writers_rows(writer(tmp_path).read_table("raw_objects", "met"), RACE_WRITERS, RACE_ROUNDS, 200)


def race_process(base_dir: str, number: int, start_at: float) -> None:
    import time

    time.sleep(max(0.0, start_at - time.time()))
    race(TableStore(base_dir=base_dir, compact_fraction=0.25, max_deltas=8), number)


def test_processes_racing_on_one_table_lose_no_row(tmp_path):
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    processes = 3
    writer(tmp_path).upsert_table(frame(range(200)), ["source_id"], "raw_objects", "met")
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        start_at = time.time() + 8  # after every process has started and imported polars and dagster
        futures = [pool.submit(race_process, str(tmp_path / "storage"), n, start_at) for n in range(processes)]
        for future in futures:
            future.result()
    expect_every_writers_rows(writer(tmp_path).read_table("raw_objects", "met"), processes, RACE_ROUNDS, 200)


def test_conditional_writes_of_the_local_store(tmp_path):
    objects = LocalObjectStore(tmp_path)
    assert objects.create_bytes("t/a.bin", b"one") and not objects.create_bytes("t/a.bin", b"two")
    assert (tmp_path / "t" / "a.bin").read_bytes() == b"one"
    read = objects.version("t/a.bin")
    assert objects.replace_bytes("t/a.bin", b"three", read)
    assert not objects.replace_bytes("t/a.bin", b"four", read)  # replaced since that version was read
    assert not objects.replace_bytes("t/a.bin", b"five", None)  # there is one
    assert objects.replace_bytes("t/b.bin", b"six", None)
    assert (tmp_path / "t" / "a.bin").read_bytes() == b"three" and (tmp_path / "t" / "b.bin").read_bytes() == b"six"
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["a.bin", "b.bin"]  # no temporary file left


def test_a_rewrite_is_told_apart_by_its_fingerprint_even_with_the_same_stamp(store, monkeypatch):
    store.write_table(frame(range(10)), "artworks", "met")
    first = store.table_fingerprint("artworks", "met")
    # a filesystem whose mtime does not move within its resolution, and a rewrite of the same size
    monkeypatch.setattr(LocalObjectStore, "stamp", lambda self, key: (1, 2) if self.exists(key) else None)
    store.write_table(frame(range(10)), "artworks", "met")
    assert store.table_fingerprint("artworks", "met") != first
    assert store.table_fingerprint("artworks", "nowhere") is None
    before = store.table_fingerprint("raw_objects", "met")
    store.upsert_table(frame(range(100)), ["source_id"], "raw_objects", "met")
    compacted = store.table_fingerprint("raw_objects", "met")
    store.upsert_table(frame([1], "b"), ["source_id"], "raw_objects", "met")  # a delta: the base is untouched
    assert before is None and store.table_fingerprint("raw_objects", "met") != compacted
