"""Benchmark: `raw_images` for a 1% change of the raw records, the former code (every record
parsed, Python dicts: `reference_raw_images` of the tests) against the asset (URL memo, polars
plan), in one process.

A copy of a stored home's ``raw_objects`` and ``raw_images`` tables of ``met`` (``--home``, e.g.
a ``bench_scale`` world; never modified) is read; ``--changed`` ok records get a new field in
their text (their image URL stays, so nothing is downloaded). The asset runs once on the
unchanged records (its memo is then stored); each timed run starts from that memo, and each
figure is the best of ``--repeat``. Both sides read the previous table; both return the same
data version (checked).

    .venv/bin/python benchmarks/bench_raw_images.py --home /tmp/bench_scale_.../home_50000 [--changed 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from dagster import build_asset_context

from artsim_pipeline.core.raw_store import content_hash
from artsim_pipeline.defs.ingest.assets import RawImagesConfig, raw_images
from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from artsim_pipeline_tests.defs.test_raw_images_memo import reference_raw_images  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--changed", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp())
    for table in ("raw_objects", "raw_images"):
        (home / "storage" / table).mkdir(parents=True)
        shutil.copy(Path(args.home) / "storage" / table / "met.parquet", home / "storage" / table)
        deltas = Path(args.home) / "storage" / table / "met.deltas"
        if deltas.is_dir():
            shutil.copytree(deltas, home / "storage" / table / "met.deltas")
    tables, storage = TableStore(base_dir=str(home / "storage")), ArtsimStorage(home=str(home))
    api = MuseumApiResource(mode="live", met_base_url="http://127.0.0.1:9")  # nothing is downloaded
    raw = tables.read_table("raw_objects", "met")
    ids = raw.filter(pl.col("status") == "ok")["source_id"].head(args.changed).to_list()
    changed = raw.filter(pl.col("source_id").is_in(ids)).with_columns(
        pl.col("raw_json").map_elements(lambda t: json.dumps({**json.loads(t), "benchNote": "changed"}), return_dtype=pl.String))
    changed = changed.with_columns(pl.col("raw_json").map_elements(content_hash, return_dtype=pl.String).alias("content_hash"))
    changed = pl.concat([raw.filter(~pl.col("source_id").is_in(ids)), changed]).sort("source_id")

    def after():
        out = raw_images(context=build_asset_context(partition_key="met"), config=RawImagesConfig(), raw_objects=changed,
                         museum_api=api, storage=storage, tables=tables)
        return out.data_version.value

    def before():
        return reference_raw_images(build_asset_context(partition_key="met"), RawImagesConfig(), changed, api, storage, tables).data_version

    raw_images(context=build_asset_context(partition_key="met"), config=RawImagesConfig(), raw_objects=raw, museum_api=api,
               storage=storage, tables=tables)
    memo = home / "cache" / "raw_images" / "met.parquet"
    kept = memo.read_bytes()
    figures, versions = {}, {}
    for name, step in (("before", before), ("after", after)):
        best = float("inf")
        for _ in range(args.repeat):
            memo.write_bytes(kept)  # each run sees the memo of the unchanged records
            started = time.perf_counter()
            versions[name] = step()
            best = min(best, time.perf_counter() - started)
        figures[name] = best
    assert versions["before"] == versions["after"], versions
    print(f"{raw.height} records, {args.changed} changed: raw_images before {figures['before']:.3f} s, "
          f"after {figures['after']:.3f} s (x{figures['before'] / figures['after']:.1f}), best of {args.repeat}")
    shutil.rmtree(home)


if __name__ == "__main__":
    main()
