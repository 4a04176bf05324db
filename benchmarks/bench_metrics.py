"""Benchmark: retrieval metrics of one split at growing candidate counts, sparse positives
against the former dense candidates x candidates matrix, in the same process.

Synthetic split: ``n`` candidates with 64-d clustered unit vectors, 3 positive and 3 negative
partners per candidate (like `weak_pairs`). For each size the script builds the task
(`retrieval_task`) and scores it (`task_metrics`), and does the same with a dense boolean
positives matrix (the representation before this change), printing seconds, the peak of
Python-allocated memory (tracemalloc) and the dense / sparse ratios.

    .venv/bin/python benchmarks/bench_metrics.py [--sizes 6000 12000 24000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import polars as pl

from artsim_pipeline.core.ml.metrics import RetrievalTask, retrieval_task, task_metrics


def synthetic_split(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(2, n // 20), 64))
    cluster = rng.integers(0, len(centres), n)
    vectors = (centres[cluster] + 0.8 * rng.standard_normal((n, 64))).astype(np.float32)
    ids = [f"syn:{i}" for i in range(n)]
    order = np.argsort(cluster, kind="stable")
    rows_a, rows_b, labels = [], [], []
    for shift in (1, 2, 3):  # neighbours in cluster order: mostly same-cluster positives
        rows_a.append(order)
        rows_b.append(np.roll(order, -shift))
        labels.append(np.ones(n, dtype=np.int8))
        rows_a.append(order)
        rows_b.append(rng.permutation(n))
        labels.append(np.zeros(n, dtype=np.int8))
    a, b, label = np.concatenate(rows_a), np.concatenate(rows_b), np.concatenate(labels)
    keep = a != b
    pairs = pl.DataFrame({
        "artwork_id_a": [ids[i] for i in a[keep]], "artwork_id_b": [ids[i] for i in b[keep]],
        "label": label[keep], "split": ["test"] * int(keep.sum()),
    })
    return ids, vectors, pairs


def dense_task(task: RetrievalTask) -> RetrievalTask:
    """The same task with the former dense positives matrix (a stand-in for the old code path)."""

    class Dense(np.ndarray):
        @property
        def indptr(self):  # what `RetrievalTask.is_query` reads
            return np.concatenate([[0], np.cumsum(self.sum(axis=1))])

        def toarray(self):
            return np.asarray(self)

    dense = task.positives.toarray().view(Dense)
    return RetrievalTask(task.split, task.candidate_ids, task.index, dense, task.negative_pairs, task.positive_pairs)


def measure(fn) -> tuple[float, float, object]:
    tracemalloc.start()
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[6000, 12000, 24000])
    args = parser.parse_args()
    print(f"{'candidates':>10} {'sparse s':>9} {'sparse MiB':>11} {'dense s':>8} {'dense MiB':>10} {'time ratio':>10} {'memory ratio':>12}")
    for n in args.sizes:
        ids, vectors, pairs = synthetic_split(n)
        s_time, s_mem, (task, sparse_scores) = measure(lambda: (lambda t: (t, task_metrics(t, vectors[t.index])))(retrieval_task(ids, pairs)))
        d_time, d_mem, dense_scores = measure(lambda: task_metrics(dense_task(task), vectors[task.index]))
        assert sparse_scores == dense_scores, "sparse and dense positives must score the same"
        print(f"{len(task.index):>10} {s_time:>9.2f} {s_mem:>11.1f} {d_time:>8.2f} {d_mem:>10.1f} {d_time / s_time:>10.2f} {d_mem / s_mem:>12.1f}")


if __name__ == "__main__":
    main()
