"""Benchmark: `AnnIndex.update` for a 1% change against its former code, in one process.

For each size N: N synthetic clustered unit vectors of `--dim` dimensions (384: all-MiniLM-L6-v2's,
the text vectors `search_index` indexes), an index built once per kind and written to disk, as
the assets store it:

- `search_index`'s text index: hnswlib holds the full vectors (`SearchIndexConfig`'s M,
  ef_construction);
- `ann_index`'s: two-stage (`AnnIndexConfig`'s search_dim 128: hnswlib over the projected
  vectors, the full ones as float16 rows in a file).

The change: `--changed` (1%) of the works get a new vector, 0.1% disappear and 0.1% are new.
Each repetition reads the stored index twice and updates one copy with the update code as it was
at `--former` (read from git: stored vectors read back label by label, `get_items` or one
`pread` per row) and the other with the current code; the update's seconds of each, the ratio
current / former (minimum over `--repeat`), and that both did the same (counts, id map, vectors);
then the same for an update where nothing changed (what finding the changes costs alone).

Then the exact search of the recall check (`recall_vs_exact`'s `brute_force_topk`) for 250 and
1,000 queries over the N vectors: one batch of up to 1,024 queries (former) against blocks of at
most `exact._SIMS_BLOCK` similarities (current).

    .venv/bin/python benchmarks/bench_ann_update.py --sizes 50000 [--dim 384] [--former 919b3bf^]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np

from artsim_pipeline.core.ann import AnnConfig, AnnIndex, brute_force_topk, build_index, exact, synthetic_clustered_vectors
from artsim_pipeline.resources.artefacts import read_ann_index, write_ann_index

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "search_index text (one-stage)": AnnConfig(),
    "ann_index (two-stage, search_dim 128)": AnnConfig(search_dim=128),
}


def former_class(commit: str) -> type:
    """`AnnIndex` with `update` and its paths as they were at `commit`."""
    source = subprocess.run(["git", "show", f"{commit}:artsim_pipeline/core/ann/update.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("former_ann_update")
    exec(compile(source, "former_ann_update.py", "exec"), module.__dict__)
    return type("FormerAnnIndex", (module.IndexUpdates, AnnIndex), {})


def changed_set(x: np.ndarray, share: float, seed: int) -> tuple[list[str], np.ndarray, int]:
    """(ids, vectors) after `share` of the works moved, 0.1% were removed and 0.1% added; moved count."""
    n, dim = x.shape
    rng = np.random.default_rng(seed)
    churn = max(1, n // 1000)
    keep = np.sort(rng.choice(n, size=n - churn, replace=False))
    y = np.vstack([x[keep], synthetic_clustered_vectors(churn, dim, n_clusters=50, seed=seed + 1)])
    moved = rng.choice(len(keep), size=max(1, int(n * share)), replace=False)
    y[moved] = synthetic_clustered_vectors(len(moved), dim, n_clusters=100, seed=seed + 2)
    ids = [f"met:{i}" for i in keep] + [f"met:{n + i}" for i in range(churn)]
    return ids, y, len(moved)


def time_update(index: AnnIndex, ids: list[str], y: np.ndarray, config: AnnConfig) -> float:
    started = time.perf_counter()
    index.update(ids, y, "run", config=config)
    return time.perf_counter() - started


def same(a: AnnIndex, b: AnnIndex, ids: list[str]) -> bool:
    labels = np.asarray([a.label_of(i) for i in ids])
    return (a.build_info["last_update"]["updated"] == b.build_info["last_update"]["updated"]
            and a.id_map().equals(b.id_map())
            and np.array_equal(a._stored_vectors(labels), b._stored_vectors(labels)))


def bench_updates(n: int, args: argparse.Namespace, former: type, workdir: Path) -> None:
    x = synthetic_clustered_vectors(n, args.dim, seed=args.seed)
    ids = [f"met:{i}" for i in range(n)]
    new_ids, y, moved = changed_set(x, args.changed, args.seed)
    print(f"\n== {n:,} works x {args.dim}: {moved} moved, {n // 1000} gone, {n // 1000} added")
    for kind, config in KINDS.items():
        config = replace(config, num_threads=args.threads)
        started = time.perf_counter()
        stored = write_ann_index(build_index(ids, x, config, model_run_id="run"), workdir / f"{n}-{config.search_dim}")
        print(f"{kind}: built and stored in {time.perf_counter() - started:.1f} s")
        for label, (to_ids, to_vectors, expected) in {"1% changed": (new_ids, y, moved), "nothing changed": (ids, x, 0)}.items():
            best = {"former": np.inf, "current": np.inf}
            for rep in range(args.repeat):
                old = read_ann_index(stored, config)
                old.__class__ = former
                new = read_ann_index(stored, config)
                order = (("former", old), ("current", new)) if rep % 2 == 0 else (("current", new), ("former", old))
                for name, index in order:
                    best[name] = min(best[name], time_update(index, to_ids, to_vectors, config))
                assert same(old, new, to_ids), "the two updates differ"
                assert new.build_info["last_update"]["updated"] == expected, new.build_info["last_update"]
            print(f"  update, {label}: former {best['former']:.2f} s, current {best['current']:.2f} s, "
                  f"current / former = {best['current'] / best['former']:.3f} (min of {args.repeat}; same result)")


def bench_exact(n: int, args: argparse.Namespace) -> None:
    """Median of `--repeat` runs (alternating): the former's one 1,024-query batch is sensitive to
    the machine's memory load (its temporaries: similarities, their negation and argpartition's
    int64 indices, 16 bytes per similarity), so its minimum hides what a loaded machine sees."""
    x = synthetic_clustered_vectors(n, args.dim, seed=args.seed)
    block = exact._SIMS_BLOCK
    print(f"\nexact top-10 over {n:,} x {args.dim} (recall_vs_exact's brute force; median of {args.repeat}):")
    for queries in (250, 1000):
        seconds: dict[str, list[float]] = {"former": [], "current": []}
        for rep in range(args.repeat):
            runs = (("former", 1 << 62), ("current", block))
            for name, sims_block in runs if rep % 2 == 0 else runs[::-1]:
                exact._SIMS_BLOCK = sims_block  # former: one batch of up to 1,024 queries
                started = time.perf_counter()
                brute_force_topk(x, x[:queries], 10)
                seconds[name].append(time.perf_counter() - started)
        exact._SIMS_BLOCK = block
        former, current = (float(np.median(seconds[k])) for k in ("former", "current"))
        rows = {"former": min(queries, 1024), "current": max(1, min(queries, 1024, block // n))}
        print(f"  {queries:>5} queries: former {former:.2f} s (runs {', '.join(f'{t:.2f}' for t in seconds['former'])}; "
              f"~{rows['former'] * n * 16 >> 20} MB a batch), current {current:.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in seconds['current'])}; ~{rows['current'] * n * 16 >> 20} MB a block), "
              f"current / former = {current / former:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--changed", type=float, default=0.01, help="share of works whose vector moves")
    ap.add_argument("--former", default="919b3bf^", help="commit whose update code is the baseline")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    former = former_class(args.former)
    with tempfile.TemporaryDirectory(prefix="bench_ann_update_") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            bench_updates(n, args, former, Path(tmp))
            bench_exact(n, args)
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
