"""Benchmark: what a 1% title change costs `weak_pairs`, `near_duplicates` and `clusters`, with
and without reusing what did not change, in one process.

The collection: a synthetic Met collection of ``--size`` records (`benchmarks/synthetic.py`: the
real shared Met records copied under new ids) normalised by `core.normalise`; a fifth of the
works are moved to the `cma` partition (ids `cma:...`) so that works of two museums exist. The
vectors: clustered unit vectors (`synthetic_clustered_vectors`, ``--dim`` 32 as bench_scale's
tiny head), 1% of the cma works made near-copies of a Met work (the near-duplicates to find);
the `ann_index` files are built from them. Stored in a fresh `$ARTSIM_HOME` as the tables the
three assets read; then, through Dagster in this process:

1. a first run of `pair_mining_fields`, `weak_pairs`, `near_duplicates` and `clusters`;
2. 1% of the Met records retitled (`synthetic.revised_ids`), `artworks` written again;
3. ``--rounds`` rounds, each: **before**, the former work: `weak_pairs` mined again, and
   `near_duplicates` and `clusters` with their stored pairs and summary removed (the search and
   the summary made again); **after**: `pair_mining_fields` (whose unchanged data version leaves
   `weak_pairs` up to date: checked with the staleness `artsim materialize` uses), then
   `near_duplicates` and `clusters` reusing what they stored.

Seconds are the Dagster steps' durations (STEP_SUCCESS, what `artsim materialize` prints: input
loading, compute and output writing); medians over the rounds and their ratio after / before.
Both outputs are compared: the same near-duplicate pairs and titles, the same summary.

    .venv/bin/python benchmarks/bench_curation.py [--size 50000] [--rounds 3] [--dim 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic import load_real_records, revised_ids, synthetic_records  # noqa: E402

OTHER_MUSEUM, OTHER_SHARE, DUPLICATE_SHARE = "cma", 5, 0.01  # every 5th work is the other museum's


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def build_artworks(size: int) -> tuple[pl.DataFrame, list[int]]:
    """The normalised collection (Met and the other museum) and the object ids of its records."""
    from artsim_pipeline.core.normalise import normalise

    records = synthetic_records(load_real_records(), size)
    raw = pl.DataFrame({
        "source_id": [str(r["objectID"]) for r in records],
        "raw_json": [json.dumps(r) for r in records],
        "fetched_at": [datetime.now(UTC)] * len(records),
        "content_hash": [str(i) for i in range(len(records))],
        "status": ["ok"] * len(records),
        "error": [None] * len(records),
    }, schema_overrides={"error": pl.String})
    artworks, _ = normalise("met", raw)
    other = pl.int_range(pl.len()) % OTHER_SHARE == 0
    artworks = artworks.with_columns(
        pl.when(other).then(pl.lit(OTHER_MUSEUM)).otherwise(pl.col("source")).alias("source"),
        pl.when(other).then(pl.lit(f"{OTHER_MUSEUM}:") + pl.col("source_id")).otherwise(pl.col("artwork_id")).alias("artwork_id"),
    )
    return artworks, [int(r["objectID"]) for r in records]


def build_vectors(artworks: pl.DataFrame, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors, a share of the other museum's works nearly equal to a Met work's."""
    from artsim_pipeline.core.ann.exact import synthetic_clustered_vectors

    n = artworks.height
    rng = np.random.default_rng(seed)
    vectors = synthetic_clustered_vectors(n, dim=dim, n_clusters=max(1, n // 50), seed=seed)
    sources = artworks["source"].to_numpy()
    other = np.flatnonzero(sources == OTHER_MUSEUM)
    met = np.flatnonzero(sources != OTHER_MUSEUM)
    copies = rng.choice(other, size=max(1, int(len(other) * DUPLICATE_SHARE * OTHER_SHARE)), replace=False)
    vectors[copies] = vectors[rng.choice(met, size=len(copies))] + rng.normal(scale=0.02 / np.sqrt(dim), size=(len(copies), dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def write_artworks(tables, artworks: pl.DataFrame) -> None:
    for source in ("met", OTHER_MUSEUM):
        tables.write_table(artworks.filter(pl.col("source") == source), "artworks", source)


def run(defs, instance, keys: list[str]) -> dict[str, float]:
    """Materialise `keys`; the seconds of each asset's step."""
    from dagster import AssetKey, materialize

    from artsim_pipeline.materialize import stages_of

    result = materialize(list(defs.assets), selection=[AssetKey(k) for k in keys], resources=defs.resources, instance=instance)
    if not result.success:
        raise SystemExit(f"materialising {keys} failed")
    return {stage.asset: stage.seconds for stage in stages_of(result)}


def drop_stored(home: Path) -> None:
    """Remove what near_duplicates and clusters keep to reuse: their next run does the former work."""
    for key in ("models/near_duplicates", "models/clusters/summary"):
        shutil.rmtree(home / key, ignore_errors=True)


def outputs(tables) -> tuple[pl.DataFrame, pl.DataFrame]:
    pairs = tables.read_table("near_duplicates").sort("artwork_id_a", "artwork_id_b")
    return pairs, tables.read_table("clusters").sort("artwork_id")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--fraction", type=float, default=0.01)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench_curation_"))
    os.environ.update({"ARTSIM_HOME": str(home), "ARTSIM_ENV": "sample"})

    from dagster import AssetKey, DagsterInstance

    from artsim_pipeline.core.ann import AnnConfig, build_index
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.materialize import _stale_or_missing
    from artsim_pipeline.resources import artefacts
    from artsim_pipeline.resources.storage import ArtsimStorage

    print(f"load average at the start: {loadavg()}; home {home}")
    started = time.monotonic()
    artworks, object_ids = build_artworks(args.size)
    vectors = build_vectors(artworks, args.dim)
    defs = build_defs("sample")
    tables = defs.resources["tables"]
    write_artworks(tables, artworks)
    ids = artworks["artwork_id"].to_list()
    tables.write_table(pl.DataFrame({"artwork_id": ids, "vector": vectors},
                                    schema={"artwork_id": pl.String, "vector": pl.Array(pl.Float32, args.dim)}), "artwork_vectors")
    artefacts.save_ann_index(ArtsimStorage(home=str(home)), build_index(ids, vectors, AnnConfig()))
    print(f"{artworks.height:,} artworks ({artworks.filter(pl.col('source') == OTHER_MUSEUM).height:,} {OTHER_MUSEUM}), "
          f"{args.dim}-d vectors and their index: {time.monotonic() - started:.1f} s")

    instance = DagsterInstance.ephemeral()
    first = run(defs, instance, ["pair_mining_fields", "weak_pairs", "near_duplicates", "clusters"])
    print("first run: " + ", ".join(f"{k} {v:.2f} s" for k, v in first.items()))

    revised = {str(i) for i in revised_ids([{"objectID": i} for i in object_ids], args.fraction)}
    retitled = artworks.with_columns(pl.when(pl.col("source_id").is_in(list(revised))).then(pl.col("title") + " (revised)")
                                     .otherwise(pl.col("title")).alias("title"))
    write_artworks(tables, retitled)
    print(f"retitled {len(revised):,} records ({args.fraction:.0%})")

    before: dict[str, list[float]] = {"weak_pairs": [], "near_duplicates": [], "clusters": []}
    after: dict[str, list[float]] = {"pair_mining_fields": [], "near_duplicates": [], "clusters": []}
    for round_number in range(args.rounds):
        drop_stored(home)
        for key, seconds in run(defs, instance, ["weak_pairs", "near_duplicates", "clusters"]).items():
            before[key].append(seconds)
        reference = outputs(tables)
        for key, seconds in run(defs, instance, ["pair_mining_fields"]).items():
            after[key].append(seconds)
        stale = _stale_or_missing(instance, defs.resolve_asset_graph(), {AssetKey("weak_pairs")}, None)
        if stale:
            raise SystemExit("weak_pairs is stale after a retitle: it would be mined again")
        for key, seconds in run(defs, instance, ["near_duplicates", "clusters"]).items():
            after[key].append(seconds)
        reused = outputs(tables)
        if not (reused[0].equals(reference[0]) and reused[1].equals(reference[1])):
            raise SystemExit("the reused outputs differ from the recomputed ones")
        print(f"round {round_number + 1}: before " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in before.items())
              + " s; after " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in after.items()) + f" s (load {loadavg()})")

    pairs = reference[0]
    print(f"\nnear-duplicate pairs: {pairs.height:,}; retitled works among them: "
          f"{pairs.filter(pl.col('title_a').str.ends_with('(revised)') | pl.col('title_b').str.ends_with('(revised)')).height:,}")
    median = {k: statistics.median(v) for k, v in {**{f'before {k}': v for k, v in before.items()},
                                                   **{f'after {k}': v for k, v in after.items()}}.items()}
    rows = [("weak_pairs", median["before weak_pairs"], median["after pair_mining_fields"], "after: pair_mining_fields runs, weak_pairs is up to date"),
            ("near_duplicates", median["before near_duplicates"], median["after near_duplicates"], "stored pairs, titles joined again"),
            ("clusters", median["before clusters"], median["after clusters"], "stored summary, titles read again")]
    print(f"\n{'asset':<18}{'before s':>10}{'after s':>10}{'after/before':>14}")
    for name, b, a, note in rows:
        print(f"{name:<18}{b:>10.2f}{a:>10.2f}{a / b:>14.3f}   {note}")
    total_b, total_a = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'the three':<18}{total_b:>10.2f}{total_a:>10.2f}{total_a / total_b:>14.3f}")
    print(f"\nload average at the end: {loadavg()}; {time.monotonic() - started:.0f} s in all")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
