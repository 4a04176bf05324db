"""Benchmark: a run that touches 1% of a raw table, upserted (new) against rewritten whole (old).

What it measures
----------------
A synthetic `raw_objects` table of N rows (default N = 50,000 and 200,000) is built from the
real Met sample records (`artsim_pipeline/sample/met_objects.jsonl.gz`, 1,997 records)
replicated with new ids (the `objectID` and the id rewritten, so every row is distinct text),
and stored in a local `TableStore`. Then, in this one process, for each N:

1. **old**: what the asset did before: the per-row merge (a Python dict of every stored row;
   the implementation is copied below) and `write_table` of the whole table.
2. **new**: `merge_changes` (polars joins) and `TableStore.upsert_table` of the changed rows
   (one delta file), into a copy of the same stored table.

Both get the same results: N/100 records, each with changed text. Printed: seconds of merge +
write (the read of the stored table, the same for both, is printed apart), bytes written, and
old/new ratios. Then `--runs` (default 30) consecutive 1% runs at the smaller N, to show the
amortised cost with compaction (a delta per run, the merged base again when the deltas pass
`compact_fraction` = 0.25 of it): total bytes written and seconds, old against new.

Last, the fetch journal: bytes per record of the journal line of 2,000 real Met records, the
earlier form (FetchResult's fields as JSON, ASCII) against the current one (short fields,
zlib against the source's sample dictionary, base85), and without the dictionary (a source
without sample records).

The machine may be shared with other jobs (the load average is printed): absolute times are
indicative, the byte counts are exact.

    .venv/bin/python benchmarks/bench_raw_tables.py [--sizes 50000,200000] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import sys
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from artsim_pipeline.core.raw_store import FetchResult, merge_changes, merge_results
from artsim_pipeline.resources.artefacts import FetchCheckpoint
from artsim_pipeline.resources.tables import TableStore
from artsim_pipeline.sample import load_sample_raw_lines

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# the per-row merge as it was before d451fd0, kept by the tests as the reference of the vectorised one
from artsim_pipeline_tests.core.test_raw_store import reference_merge_results  # noqa: E402


def replicated_texts(n: int) -> list[tuple[str, str]]:
    """(source_id, text) for n records: the sample's records with new ids."""
    lines = load_sample_raw_lines("met")
    out = []
    for i in range(n):
        record = json.loads(lines[i % len(lines)])
        record["objectID"] = 10_000_000 + i
        record["objectURL"] = f"https://www.metmuseum.org/art/collection/search/{10_000_000 + i}"
        out.append((str(10_000_000 + i), json.dumps(record)))
    return out


def touched(texts: list[tuple[str, str]], run: int, share: float = 0.01) -> list[FetchResult]:
    """A run's results: `share` of the records, spread over the table, each with changed text."""
    k = max(1, int(len(texts) * share))
    step = len(texts) // k
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return [FetchResult(sid, "ok", raw_json=text[:-1] + f', "run": {run}}}', modified=f"run{run}", fetched_at=at)
            for sid, text in (texts[(j * step + run * 7) % len(texts)] for j in range(k))]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def one_run(store: TableStore, results: list[FetchResult], *, old: bool) -> tuple[float, float, int, pl.DataFrame]:
    """(read seconds, merge + write seconds, bytes written, table after) of one 1% run."""
    root = Path(store.base_dir)
    started = time.perf_counter()
    previous = store.read_table("raw_objects", "met")
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    if old:
        table, _ = reference_merge_results(previous, results)
        store.write_table(table, "raw_objects", "met")
        written = dir_bytes(root)  # the file is replaced: what was written is its new size
    else:
        changes, _ = merge_changes(previous, results)
        report = store.upsert_table(changes, ["source_id"], "raw_objects", "met")
        written = report.bytes_written
        table = None
    seconds = time.perf_counter() - started
    return read_s, seconds, written, table


def stored_table(n: int, directory: Path) -> tuple[list[tuple[str, str]], TableStore, TableStore]:
    texts = replicated_texts(n)
    at = datetime(2025, 1, 1, tzinfo=timezone.utc)
    table, _ = merge_results(None, [FetchResult(sid, "ok", raw_json=text, modified="2025", fetched_at=at) for sid, text in texts])
    old_store = TableStore(base_dir=str(directory / "old"))
    new_store = TableStore(base_dir=str(directory / "new"))
    old_store.write_table(table, "raw_objects", "met")
    new_store.upsert_table(table, ["source_id"], "raw_objects", "met")
    return texts, old_store, new_store


def bench_size(n: int, directory: Path) -> None:
    texts, old_store, new_store = stored_table(n, directory)
    base_bytes = dir_bytes(directory / "old")
    results = touched(texts, 1)
    old_read, old_s, old_bytes, _ = one_run(old_store, results, old=True)
    new_read, new_s, new_bytes, _ = one_run(new_store, results, old=False)
    same = old_store.read_table("raw_objects", "met").equals(new_store.read_table("raw_objects", "met"))
    print(f"N={n:>7,} (table {base_bytes / 1e6:6.1f} MB), {len(results):,} records touched: "
          f"merge+write old {old_s:6.2f} s, new {new_s:6.3f} s (x{old_s / new_s:5.1f}); "
          f"bytes written old {old_bytes:>11,}, new {new_bytes:>9,} (x{old_bytes / new_bytes:6.1f}); "
          f"read of the stored table old {old_read:.2f} s, new {new_read:.2f} s; same table: {same}")


def bench_runs(n: int, runs: int, directory: Path) -> None:
    texts, old_store, new_store = stored_table(n, directory)
    totals = {"old": [0.0, 0], "new": [0.0, 0]}
    compactions = 0
    for run in range(1, runs + 1):
        results = touched(texts, run)
        for name, store in (("old", old_store), ("new", new_store)):
            before = len(list(store.objects.list_keys(store.deltas_prefix("raw_objects", "met"))))
            _, seconds, written, _ = one_run(store, results, old=name == "old")
            totals[name][0] += seconds
            totals[name][1] += written
            if name == "new" and before and not list(store.objects.list_keys(store.deltas_prefix("raw_objects", "met"))):
                compactions += 1
    same = old_store.read_table("raw_objects", "met").equals(new_store.read_table("raw_objects", "met"))
    (old_s, old_b), (new_s, new_b) = totals["old"], totals["new"]
    print(f"{runs} consecutive 1% runs at N={n:,} ({compactions} compactions): merge+write old {old_s:.1f} s, new {new_s:.1f} s "
          f"(x{old_s / new_s:.1f}); bytes written old {old_b:,}, new {new_b:,} (x{old_b / new_b:.1f}, amortised "
          f"{new_b / runs:,.0f} B a run against {old_b / runs:,.0f}); same table: {same}")


def bench_journal(directory: Path) -> None:
    lines = load_sample_raw_lines("met")
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    results = [FetchResult(str(i), "ok", raw_json=text, modified="2026-01-01T00:00:00Z", fetched_at=at) for i, text in enumerate(lines)]
    earlier = sum(len(json.dumps({**r.__dict__, "fetched_at": r.fetched_at.isoformat()}, ensure_ascii=True)) + 1 for r in results)
    sizes = {}
    for label, source in (("sample dictionary", "met"), ("no dictionary", None)):
        path = directory / f"journal-{label.replace(' ', '-')}.jsonl"
        journal = FetchCheckpoint(path, source=source)
        for result in results:
            journal.append(result)
        journal.close()
        assert FetchCheckpoint(path, source=source).load() == results
        sizes[label] = path.stat().st_size
    text = sum(len(r.raw_json.encode()) for r in results)
    n = len(results)
    print(f"fetch journal, {n:,} Met records ({text / n:,.0f} B of JSON each): earlier form {earlier / n:,.0f} B a record; "
          f"now {sizes['sample dictionary'] / n:,.0f} B (x{earlier / sizes['sample dictionary']:.1f} smaller), "
          f"{sizes['no dictionary'] / n:,.0f} B without a dictionary (x{earlier / sizes['no dictionary']:.1f}); "
          f"and it is emptied at the end of every successful run (before: it kept the last run's records until the next)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    directory = Path(tempfile.mkdtemp(prefix="bench-raw-tables-"))
    try:
        bench_journal(directory)
        sizes = [int(s) for s in args.sizes.split(",")]
        for n in sizes:
            bench_size(n, directory / f"n{n}")
            shutil.rmtree(directory / f"n{n}")
        if args.runs:
            bench_runs(min(sizes), args.runs, directory / "runs")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
