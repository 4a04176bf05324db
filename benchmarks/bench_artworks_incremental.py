"""Benchmark: what `artworks` and `text_embeddings` cost for a 1% metadata change, re-doing
everything (the former code) against reusing the stored results (incremental), in one process.

``--rows`` Met records (default 50,000: the real records of ``../shared/data`` replicated under
new ids, ``bench_normalise.build_raw_objects``) with one image row each are normalised once and
stored (the tables and the normalisation state as Parquet bytes, as the IO manager and the
storage layout keep them, text embeddings' keys beside them); then ``--fraction`` (default 1%)
of the records get a new title, and per step:

- normalise: ``normalise()`` of every record (baseline) against ``normalise_incremental`` with
  the stored tables and state, read from their Parquet bytes (after);
- validate: great-expectations on the whole table, the baseline building its context and suite
  as every call did (first call of a process), against the per-process context (later calls;
  a process that validates one partition still builds it once);
- texts: ``artwork_text`` + sha256 of every work in Python (baseline) against
  ``texts_wanted``, which builds texts only where the text fields' hash changed.

Each figure is the best of ``--repeat`` runs (default 3); printed with the ratio baseline / after.
The import of great-expectations (seconds, once per process) is printed apart: neither side pays
it in the loop.

Then the Dagster asset itself (``artworks`` and ``artworks_quarantine`` of the ``met``
partition, materialised in this process over a temporary store: reading the raw tables,
normalising, writing both tables and the state, the checks): a full build of the original
records first (it imports great-expectations and leaves the state), then, on the retitled
records, the baseline with the state removed (a full pass, what every run did before) against
the run that reuses it (best of ``--repeat`` each; the state and tables are put back between).

    .venv/bin/python benchmarks/bench_artworks_incremental.py [--rows 50000] [--fraction 0.01] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_normalise import build_raw_objects  # noqa: E402

from artsim_pipeline.core.ml.text import artwork_text, texts_wanted  # noqa: E402
from artsim_pipeline.core.normalise import normalise  # noqa: E402
from artsim_pipeline.core.normalise.incremental import Stored, normalise_incremental  # noqa: E402
from artsim_pipeline.core.raw_store import content_hash  # noqa: E402


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def read(data: bytes) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data))


def best(repeat: int, run: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def images_for(raw: pl.DataFrame) -> pl.DataFrame:
    url = pl.col("raw_json").str.json_path_match("$.primaryImageSmall")
    return raw.select("source_id", url.alias("url")).filter(pl.col("url").str.len_bytes() > 0).select(
        "source_id", "url", pl.col("url").hash().cast(pl.String).str.pad_start(64, "0").alias("sha256"), status=pl.lit("ok")
    )


def edited(raw: pl.DataFrame, fraction: float) -> pl.DataFrame:
    every = max(1, round(1 / fraction))
    edit = pl.int_range(pl.len()) % every == 0
    title = pl.col("raw_json").str.replace('"title": "', '"title": "Edited: ', literal=True)
    return raw.with_columns(pl.when(edit).then(title).otherwise(pl.col("raw_json")).alias("raw_json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    raw = build_raw_objects(args.rows)
    images = images_for(raw)
    first = normalise_incremental("met", raw, images)
    stored = {name: parquet_bytes(frame) for name, frame in
              (("artworks", first.artworks), ("quarantine", first.quarantine), ("state", first.state))}
    wanted, _ = texts_wanted(first.artworks, None)
    stored_texts = parquet_bytes(wanted)
    changed = edited(raw, args.fraction)
    print(f"{args.rows:,} Met records, {first.artworks.height:,} artworks; "
          f"{changed.filter(pl.col('raw_json') != raw['raw_json']).height:,} records retitled")

    def incremental():
        previous = Stored(read(stored["artworks"]), read(stored["quarantine"]), read(stored["state"]), first.version)
        return normalise_incremental("met", changed, images, stored=previous)

    t_full, (artworks, quarantine) = best(args.repeat, lambda: normalise("met", changed, images))
    t_inc, result = best(args.repeat, incremental)
    assert result.mode == "incremental", result.reason
    assert result.artworks.equals(artworks) and result.quarantine.drop("quarantined_at").equals(quarantine.drop("quarantined_at"))

    from artsim_pipeline import settings
    from artsim_pipeline.core import expectations

    settings.silence_great_expectations()
    started = time.perf_counter()
    import great_expectations  # noqa: F401

    t_import = time.perf_counter() - started

    def validate_fresh():
        expectations._gx_context.cache_clear()
        expectations._validation.cache_clear()
        return expectations.validate_artworks(artworks, "met")

    t_val_fresh, _ = best(args.repeat, validate_fresh)
    t_val_warm, outcomes = best(args.repeat, lambda: expectations.validate_artworks(artworks, "met"))
    assert all(o.passed for o in outcomes if o.severity == "error")

    def every_text():
        return [content_hash(artwork_text(row)) for row in artworks.iter_rows(named=True)]

    t_text_all, hashes = best(args.repeat, every_text)
    t_text_inc, (now, built) = best(args.repeat, lambda: texts_wanted(artworks, read(stored_texts)))
    assert now["text_sha256"].to_list() == hashes, "texts differ from building every one"

    asset_before, asset_after, modes = asset_runs(raw, changed, images, args.repeat)
    print(f"import great_expectations (once per process, both sides): {t_import:.2f} s")
    print(f"{'step':<44}{'baseline s':>11}{'after s':>9}{'ratio':>8}")
    for name, before, after in (
        ("normalise (all vs changed)", t_full, t_inc),
        ("validate (context per call vs once)", t_val_fresh, t_val_warm),
        ("texts (all vs changed fields)", t_text_all, t_text_inc),
        ("sum", t_full + t_val_fresh + t_text_all, t_inc + t_val_warm + t_text_inc),
        (f"asset artworks[met] ({modes})", asset_before, asset_after),
    ):
        print(f"{name:<44}{before:>11.3f}{after:>9.3f}{before / after:>8.1f}")
    print(f"re-normalised {result.renormalised:,} records, reused {result.reused:,}; built {len(built):,} texts")


def asset_runs(raw: pl.DataFrame, changed: pl.DataFrame, images: pl.DataFrame, repeat: int) -> tuple[float, float, str]:
    """The ``artworks`` multi-asset through Dagster: full pass (no state) against reuse."""
    import shutil
    import tempfile

    from dagster import AssetKey, materialize

    from artsim_pipeline.defs.ingest.assets import raw_images, raw_objects
    from artsim_pipeline.defs.validation.assets import artworks
    from artsim_pipeline.resources.io_manager import PolarsParquetIOManager
    from artsim_pipeline.resources.museum_api import MuseumApiResource
    from artsim_pipeline.resources.storage import ArtsimStorage
    from artsim_pipeline.resources.tables import TableStore

    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    home = Path(tempfile.mkdtemp(prefix="bench_artworks_"))
    try:
        store = TableStore(base_dir=str(home))
        resources = {"io_manager": PolarsParquetIOManager(store=store), "tables": store,
                     "storage": ArtsimStorage(home=str(home)), "museum_api": MuseumApiResource()}
        store.write_table(images, "raw_images", "met")

        def run() -> dict:
            result = materialize([raw_objects, raw_images, artworks], partition_key="met", resources=resources,
                                 selection=[AssetKey("artworks"), AssetKey("artworks_quarantine")], run_config=quiet)
            assert result.success
            [event] = [e for e in result.get_asset_materialization_events() if e.materialization.asset_key == AssetKey("artworks")]
            return {k: v.value for k, v in event.materialization.metadata.items()}

        store.write_table(raw, "raw_objects", "met")
        run()  # the build before the change: imports great-expectations, leaves the tables and the state
        kept = home.parent / f"{home.name}-kept"
        shutil.copytree(home, kept)
        store.write_table(changed, "raw_objects", "met")

        def from_kept(remove_state: bool) -> dict:
            for name in ("artworks", "artworks_quarantine", "state"):
                shutil.rmtree(home / name, ignore_errors=True)
                shutil.copytree(kept / name, home / name)
            if remove_state:
                shutil.rmtree(home / "state" / "artworks")
            return run()

        timings = {}
        for label, remove_state in (("baseline", True), ("after", False)):
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                meta = from_kept(remove_state)
                times.append(time.perf_counter() - started)
            timings[label] = (min(times), meta["normalisation"])
        shutil.rmtree(kept)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    (before, mode_before), (after, mode_after) = timings["baseline"], timings["after"]
    return before, after, f"{mode_before} vs {mode_after}"


if __name__ == "__main__":
    main()
