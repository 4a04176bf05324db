"""Benchmark: the hnswlib index (``artsim_pipeline.core.ann``) against numpy brute force.

Data: clustered, embedding-like unit vectors (uniform random vectors make recall
meaningless) from :func:`synthetic_clustered_vectors`: ``--clusters`` (default 1,000)
centres uniform on the sphere, log-normal cluster sizes, each point = centre + r_c x (rank-32
Gaussian spread in a random per-cluster subspace + 25 % isotropic noise), r_c ~ U(0.6, 1.2)
per cluster, L2-normalised. Queries are ``--queries`` held-out points from the same
distribution (not in the index, so self-matches do not inflate recall). The script prints the
data's cosine statistics so the difficulty can be judged.

For each size it reports: build seconds and inserts/s, index file size and RSS growth during
the build, save/load seconds, recall@10 and query throughput at each ``--efs`` value
(single-thread one-query-at-a-time through ``AnnIndex.query``, and one batched call using all
threads), numpy brute force in the same process (exact top-10 by batched matrix product, plus
one-at-a-time), the speed-up ratios, and the latency of the first queries right after loading
the saved index in ``--cold-runs`` fresh processes (the CLI path).

    .venv/bin/python benchmarks/bench_ann.py                      # 100k and 500k, dim 256
    .venv/bin/python benchmarks/bench_ann.py --sizes 100000       # quick mode
    .venv/bin/python benchmarks/bench_ann.py --dim 384 --json out.json

Timings are wall-clock on whatever the machine has; on shared cores note the load average
printed at the start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from artsim_pipeline.core.ann import (
    AnnConfig,
    brute_force_topk,
    build_index,
    synthetic_clustered_vectors,
)
from artsim_pipeline.resources.artefacts import read_ann_index, write_ann_index

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_search import loadavg  # noqa: E402 - one definition for every benchmark


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


_COLD = r"""
import sys, time, numpy as np
t0 = time.perf_counter()
from artsim_pipeline.resources.artefacts import read_ann_index
t1 = time.perf_counter()
idx = read_ann_index(sys.argv[1])
t2 = time.perf_counter()
q = np.load(sys.argv[2])
t3 = time.perf_counter()
ids, _ = idx.query(q[0], 10)
t4 = time.perf_counter()
idx.query(q[1], 10)
t5 = time.perf_counter()
lat = []
for v in q[2:102]:
    s = time.perf_counter(); idx.query(v, 10, num_threads=1); lat.append(time.perf_counter() - s)
print(f"{t1-t0:.4f} {t2-t1:.4f} {(t4-t3)*1e3:.3f} {(t5-t4)*1e3:.3f} "
      f"{np.median(lat)*1e3:.3f} {np.percentile(lat, 99)*1e3:.3f}")
"""


def run_size(n: int, args: argparse.Namespace, workdir: Path) -> dict:
    print(f"\n=== n = {n:,}  dim = {args.dim}  clusters = {args.clusters}  load avg {loadavg()}")
    res: dict = {"n": n, "dim": args.dim, "clusters": args.clusters}
    t = time.perf_counter()
    allx = synthetic_clustered_vectors(n + args.queries, args.dim, args.clusters, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    perm = rng.permutation(n + args.queries)
    x, q = allx[perm[:n]], allx[perm[n:]]
    del allx
    ids = [f"{'met' if i % 2 else 'smk'}:{i}" for i in range(n)]
    print(f"data: {time.perf_counter() - t:.1f} s")

    # exact ground truth + brute-force throughput (batched, then one at a time)
    t = time.perf_counter()
    exact_idx, exact_sc = brute_force_topk(x, q, 10, batch=256)
    bf_batch_s = time.perf_counter() - t
    n_single = min(args.bf_single, len(q))
    t = time.perf_counter()
    for v in q[:n_single]:
        brute_force_topk(x, v[None, :], 10)
    bf_single_s = (time.perf_counter() - t) / n_single
    res["bf_batch_qps"] = len(q) / bf_batch_s
    res["bf_single_qps"] = 1 / bf_single_s
    rand = rng.choice(n, size=(2000, 2))
    res["data"] = {
        "cos_nn1_mean": float(exact_sc[:, 0].mean()),
        "cos_nn10_mean": float(exact_sc[:, 9].mean()),
        "cos_random_pair_mean": float(np.einsum("ij,ij->i", x[rand[:, 0]], x[rand[:, 1]]).mean()),
    }
    print(
        "data cosines: nn1 {cos_nn1_mean:.3f}, nn10 {cos_nn10_mean:.3f}, random pair "
        "{cos_random_pair_mean:.3f}".format(**res["data"])
    )
    print(f"brute force: batched {res['bf_batch_qps']:,.0f} q/s, one-at-a-time "
          f"{res['bf_single_qps']:,.1f} q/s")

    config = AnnConfig(M=args.M, ef_construction=args.ef_construction, num_threads=args.threads)
    rss0 = rss_mb()
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 30 or done == total:
            print(f"  build {done:,}/{total:,}", flush=True)
            last[0] = now

    index = build_index(ids, x, config, model_run_id="bench", progress=progress)
    res["build_s"] = index.build_info["build_seconds"]
    res["rss_delta_mb"] = rss_mb() - rss0
    print(f"build: {res['build_s']:.1f} s ({n / res['build_s']:,.0f} inserts/s), "
          f"RSS +{res['rss_delta_mb']:,.0f} MB")

    target = workdir / f"ann-{n}"
    t = time.perf_counter()
    write_ann_index(index, target)
    res["save_s"] = time.perf_counter() - t
    res["file_mb"] = sum(p.stat().st_size for p in target.iterdir()) / 2**20
    res["index_bin_mb"] = (target / "index.bin").stat().st_size / 2**20
    t = time.perf_counter()
    read_ann_index(target)
    res["load_s"] = time.perf_counter() - t
    print(f"save {res['save_s']:.2f} s, load {res['load_s']:.2f} s, files {res['file_mb']:,.0f} MB "
          f"(index.bin {res['index_bin_mb']:,.0f} MB, raw vectors {x.nbytes / 2**20:,.0f} MB)")

    ids_arr = np.asarray(ids, dtype=object)
    exact_sets = [set(ids_arr[row].tolist()) for row in exact_idx]
    res["by_ef"] = {}
    n_single_q = min(args.single_queries, len(q))
    for ef in args.efs:
        t = time.perf_counter()
        got, _ = index.query(q, 10, ef=ef)
        batch_s = time.perf_counter() - t
        recall = float(np.mean([len(set(g) & e) / 10 for g, e in zip(got, exact_sets, strict=True)]))
        t = time.perf_counter()
        for v in q[:n_single_q]:
            index.query(v, 10, ef=ef, num_threads=1)
        single_s = (time.perf_counter() - t) / n_single_q
        row = {
            "recall@10": recall,
            "batch_qps": len(q) / batch_s,
            "single_qps": 1 / single_s,
            "single_ms": single_s * 1e3,
        }
        row["speedup_batch"] = row["batch_qps"] / res["bf_batch_qps"]
        row["speedup_single"] = row["single_qps"] / res["bf_single_qps"]
        res["by_ef"][ef] = row
        print(f"ef {ef:>4}: recall@10 {recall:.4f} | single-thread {row['single_qps']:,.0f} q/s "
              f"({row['single_ms']:.3f} ms, x{row['speedup_single']:,.0f} vs brute one-at-a-time) | "
              f"batch {row['batch_qps']:,.0f} q/s (x{row['speedup_batch']:,.1f} vs brute batched)")

    qfile = workdir / "queries.npy"
    np.save(qfile, q[:102])
    del index
    runs = []
    for _ in range(args.cold_runs):
        out = subprocess.run(
            [sys.executable, "-c", _COLD, str(target), str(qfile)],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        runs.append(dict(zip(
            ["import_s", "load_s", "first_query_ms", "second_query_ms", "median_query_ms",
             "p99_query_ms"], map(float, out), strict=True,
        )))
    res["cold_runs"] = runs
    first = sorted(r["first_query_ms"] for r in runs)
    print(f"fresh process x{len(runs)} (load, then query at ef {AnnConfig().ef}): load "
          f"{np.median([r['load_s'] for r in runs]):.2f} s; first query ms "
          f"{', '.join(f'{v:.2f}' for v in first)} (median {np.median(first):.2f}); "
          f"second {np.median([r['second_query_ms'] for r in runs]):.2f} ms; then median "
          f"{np.median([r['median_query_ms'] for r in runs]):.3f} ms / p99 "
          f"{np.median([r['p99_query_ms'] for r in runs]):.3f} ms")
    print(f"load avg at end: {loadavg()}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,500000", help="comma-separated index sizes")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=1000, help="held-out queries for recall/batch")
    ap.add_argument("--single-queries", type=int, default=500, help="one-at-a-time queries timed")
    ap.add_argument("--bf-single", type=int, default=50, help="one-at-a-time brute-force queries")
    ap.add_argument("--efs", default="50,100,200")
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None, help="default: all cores")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold-runs", type=int, default=5, help="fresh processes timing load + query")
    ap.add_argument("--keep", help="keep the saved indexes in this directory")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    args.efs = [int(v) for v in args.efs.split(",")]
    sizes = [int(v) for v in args.sizes.split(",")]
    print(f"cores {os.cpu_count()}, threads {args.threads or 'all'}, numpy {np.__version__}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ann-") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            results.append(run_size(n, args, workdir))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
