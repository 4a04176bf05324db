"""Benchmark: weak-pair mining on 500,000 synthetic artworks, against a naive pandas self-merge.

Synthetic collection: the real Met records in ``../shared/data/met/objects.jsonl`` (about
4,700) are replicated with new ids up to ``--rows`` works.  Group sizes keep the real
distribution and grow the way a bigger collection's do:

* every maker string gets a per-replica clone name (``Edgar Degas Xb``); a maker with ``c``
  real works keeps one name over ``min(replicas, max(3, 2c))`` consecutive replicas, so
  prolific makers grow into groups of thousands while one-off makers stay small;
* every 10th replica becomes an SMK copy (``smk:`` ids, makers written ``Surname, Forename``)
  so the cross-museum rule and the name normaliser have real work to do;
* one maker, ``Katsushika Hokusai``, is given every 25th work: a 20,000-work group;
* culture, classification, department, dates and tags are copied as they are (so the big
  culture+classification and tag groups are the real ones times the replica count).

``mine_pairs`` runs in a fresh child process (input read from Parquet) so that its peak RSS
(``ru_maxrss``) is its own; the baseline (pandas: explode the normalised makers, self-merge on
the maker key, keep a < b) runs in another child on a subset of the works, and its time and
memory are extrapolated to the full collection by the ratio of the exact pair counts (the
self-merge's output is quadratic in the group sizes).

    .venv/bin/python benchmarks/bench_pairs.py [--rows 500000] [--baseline-rows 40000]

Data location: ``$ARTSIM_SHARED_DATA`` or ``<repo>/../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

SCHEMA = {
    "artwork_id": pl.String,
    "source": pl.String,
    "source_id": pl.String,
    "title": pl.String,
    "artists": pl.List(pl.String),
    "date_begin": pl.Int32,
    "date_end": pl.Int32,
    "department": pl.String,
    "classification": pl.String,
    "object_type": pl.String,
    "culture": pl.String,
    "tags": pl.List(pl.String),
}


def shared_data() -> Path:
    from artsim_pipeline import settings

    return settings.shared_data_dir()


def met_base() -> pl.DataFrame:
    """The real Met records as (a subset of) the artworks schema, by a plain converter."""
    rows = []
    path = shared_data() / "met" / "objects.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        names = [c["name"] for c in (r.get("constituents") or []) if c.get("name")]
        if not names and r.get("artistDisplayName"):
            names = [r["artistDisplayName"]]
        rows.append(
            {
                "artwork_id": f"met:{r['objectID']}",
                "source": "met",
                "source_id": str(r["objectID"]),
                "title": r.get("title") or None,
                "artists": names,
                "date_begin": r.get("objectBeginDate"),
                "date_end": r.get("objectEndDate"),
                "department": r.get("department") or None,
                "classification": r.get("classification") or r.get("objectName") or None,
                "object_type": r.get("objectName") or None,
                "culture": r.get("culture") or None,
                "tags": [t["term"] for t in (r.get("tags") or []) if t.get("term")],
            }
        )
    return pl.DataFrame(rows, schema=SCHEMA)


def synthetic(rows: int, giant_every: int = 25) -> pl.DataFrame:
    base = met_base().with_row_index("base_row")
    reps = -(-rows // base.height)
    counts = base.select("artists").explode("artists").drop_nulls().group_by("artists").len()
    frame = (
        base.join(
            pl.DataFrame({"rep": pl.arange(0, reps, eager=True, dtype=pl.Int64)}), how="cross"
        )
        .sort("rep", "base_row")
        .head(rows)
        .with_row_index("i")
    )
    is_smk = pl.col("rep") % 10 == 9
    long = (
        frame.select("i", "rep", "artists")
        .explode("artists")
        .drop_nulls("artists")
        .join(counts, on="artists", how="left")
        .with_columns(
            pl.min_horizontal(pl.lit(reps), pl.max_horizontal(pl.lit(3), 2 * pl.col("len"))).alias(
                "g"
            )
        )
        .with_columns(
            (pl.col("rep") // pl.col("g"))
            .cast(pl.String)
            .str.replace_many([str(d) for d in range(10)], list("abcdefghij"))
            .alias("clone")
        )
        .with_columns(pl.concat_str(pl.col("artists"), pl.lit(" X"), pl.col("clone")).alias("name"))
        .with_columns(
            pl.when(is_smk)
            .then(
                pl.concat_str(
                    pl.col("name").str.extract(r"(\S+)$"),
                    pl.lit(", "),
                    pl.col("name").str.extract(r"^(.*)\s\S+$"),
                )
            )
            .otherwise(pl.col("name"))
            .alias("name")
        )
        .group_by("i")
        .agg(pl.col("name"))
    )
    frame = frame.join(long, on="i", how="left").with_columns(
        pl.when(pl.col("i") % giant_every == 0)
        .then(pl.lit(["Katsushika Hokusai"], dtype=pl.List(pl.String)))
        .otherwise(pl.col("name").fill_null(pl.lit([], dtype=pl.List(pl.String))))
        .alias("artists"),
        pl.when(is_smk).then(pl.lit("smk")).otherwise(pl.lit("met")).alias("source"),
        (pl.col("i") + 1_000_000).cast(pl.String).alias("source_id"),
    )
    return frame.sort("i").select(
        pl.concat_str("source", pl.lit(":"), "source_id").alias("artwork_id"),
        *[c for c in SCHEMA if c != "artwork_id"],
    )


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child_mine(path: str) -> dict:
    from artsim_pipeline.core.pairs import mine_pairs, pair_stats

    artworks = pl.read_parquet(path)
    before = _current_rss_mib()
    c0, t0 = time.process_time(), time.perf_counter()
    pairs = mine_pairs(artworks, seed=0)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = _peak_rss_mib()
    stats = pair_stats(pairs)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mib": peak,
        "rss_before_mib": before,
        "pairs": pairs.height,
        "by_rule": stats["by_rule"],
        "split_fractions": stats["split_fractions"],
        "artwork_split_fractions": stats["artwork_split_fractions"],
        "positives_per_artwork": stats["positives_per_artwork"],
        "negatives_per_positive": stats["negatives_per_positive"],
    }


def child_naive(path: str) -> dict:
    import pandas  # noqa: F401  (to_pandas below needs it)

    from artsim_pipeline.core.names import normalise_artist

    frame = pl.read_parquet(path, columns=["artwork_id", "artists"]).to_pandas()
    before = _current_rss_mib()
    c0, t0 = time.process_time(), time.perf_counter()
    long = frame.explode("artists").dropna(subset=["artists"])
    keys = {n: normalise_artist(n) for n in long["artists"].unique()}
    long["maker"] = long["artists"].map(keys)
    long = long.dropna(subset=["maker"])[["artwork_id", "maker"]].drop_duplicates()
    merged = long.merge(long, on="maker", suffixes=("_a", "_b"))
    merged = merged[merged["artwork_id_a"] < merged["artwork_id_b"]]
    pairs = merged[["artwork_id_a", "artwork_id_b"]].drop_duplicates()
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - c0,
        "peak_rss_mib": _peak_rss_mib(),
        "rss_before_mib": before,
        "pairs": int(len(pairs)),
        "merged_rows": int(len(merged)),
    }


def run_child(kind: str, path: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, path],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def self_merge_pairs(artworks: pl.DataFrame) -> int:
    """Exact number of same-maker (a < b) rows a naive self-merge produces."""
    from artsim_pipeline.core.names import normalise_artist

    long = artworks.select("artwork_id", "artists").explode("artists").drop_nulls("artists")
    names = long.get_column("artists").unique()
    lookup = pl.DataFrame(
        {"artists": names, "maker": [normalise_artist(n) for n in names.to_list()]}
    )
    sizes = (
        long.join(lookup, on="artists")
        .drop_nulls("maker")
        .unique(["artwork_id", "maker"])
        .group_by("maker")
        .len()
    )
    return int(sizes.select((pl.col("len").cast(pl.Int64) * (pl.col("len") - 1) // 2).sum()).item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--baseline-rows", type=int, default=40_000)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path = args.child
        print(json.dumps(child_mine(path) if kind == "mine" else child_naive(path)))
        return

    t0 = time.perf_counter()
    artworks = synthetic(args.rows)
    build_s = time.perf_counter() - t0
    maker_sizes = (
        artworks.select("artists")
        .explode("artists")
        .drop_nulls()
        .group_by("artists")
        .len()
        .get_column("len")
    )
    print(
        f"synthetic collection: {artworks.height:,} works from {met_base().height:,} Met records "
        f"in {build_s:.1f}s; maker strings {maker_sizes.len():,}, largest group "
        f"{maker_sizes.max():,}, groups >= 1,000: {(maker_sizes >= 1000).sum()}"
    )
    subset = artworks.filter(pl.col("artwork_id").hash(11) % args.rows < args.baseline_rows)
    full_pairs = self_merge_pairs(artworks)
    sub_pairs = self_merge_pairs(subset)

    with tempfile.TemporaryDirectory() as tmp:
        full_path = str(Path(tmp) / "artworks.parquet")
        sub_path = str(Path(tmp) / "subset.parquet")
        artworks.write_parquet(full_path)
        subset.write_parquet(sub_path)
        del artworks
        mine = run_child("mine", full_path)
        naive = run_child("naive", sub_path)

    scale = full_pairs / max(sub_pairs, 1)
    naive_s_full = naive["seconds"] * scale
    naive_cpu_full = naive["cpu_seconds"] * scale
    naive_mem_full = (naive["peak_rss_mib"] - naive["rss_before_mib"]) * scale
    print()
    print(f"{'':36}{'wall s':>10}{'CPU s':>10}{'peak RSS MiB':>15}{'pairs':>14}")
    rows = [
        (
            f"mine_pairs, {args.rows:,} works",
            mine["seconds"],
            mine["cpu_seconds"],
            mine["peak_rss_mib"],
            mine["pairs"],
        ),
        (
            f"naive self-merge, {subset.height:,} works",
            naive["seconds"],
            naive["cpu_seconds"],
            naive["peak_rss_mib"],
            naive["pairs"],
        ),
        ("naive, extrapolated to full", naive_s_full, naive_cpu_full, naive_mem_full, full_pairs),
    ]
    for label, wall, cpu, mem, n in rows:
        print(f"{label:36}{wall:>10.1f}{cpu:>10.1f}{mem:>15,.0f}{n:>14,}")
    print()
    print(f"mine_pairs input RSS before the call: {mine['rss_before_mib']:.0f} MiB")
    print(f"same-maker pairs of a self-merge: subset {sub_pairs:,}, full {full_pairs:,}")
    print(f"  extrapolation factor (full / subset pairs): x{scale:,.0f}")
    print(
        f"speed-up vs naive (extrapolated): x{naive_s_full / mine['seconds']:,.1f} wall, "
        f"x{naive_cpu_full / mine['cpu_seconds']:,.1f} CPU; "
        f"naive memory ~{naive_mem_full / 1024:,.0f} GiB"
    )

    def rounded(d: dict) -> dict:
        return {k: round(v, 3) for k, v in d.items()}

    print(f"pairs by rule: {mine['by_rule']}")
    print(f"split fractions (pairs): {rounded(mine['split_fractions'])}")
    print(f"split fractions (artworks): {rounded(mine['artwork_split_fractions'])}")
    print(f"positives per artwork: {mine['positives_per_artwork']}")
    print(f"negatives per positive: {mine['negatives_per_positive']:.3f}")
    goal = mine["seconds"] < 30 and mine["peak_rss_mib"] < 4096
    load = os.getloadavg()[0]
    print(
        f"goal (< 30 s and < 4 GiB peak RSS): {'met' if goal else 'MISSED'}  "
        f"(CPUs: {os.cpu_count()}, 1-min load average at the end {load:.1f})"
    )


if __name__ == "__main__":
    main()
