"""Vector helpers and exact search: unit rows, brute-force top-k, how much of exact search an
index finds, and embedding-like synthetic vectors for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from artsim_pipeline.core.vectors import l2_normalise

if TYPE_CHECKING:
    from artsim_pipeline.core.ann.index import AnnIndex


def normalize(vectors: Any, dim: int | None = None) -> np.ndarray:
    """Return a C-contiguous float32 2-D copy with unit rows; reject NaN/inf and zero rows.

    Accepts a 2-D array, one vector, a list of vectors, or a polars Series of lists/arrays.
    """
    if isinstance(vectors, pl.Series):
        vectors = vectors.to_numpy()
    arr = np.asarray(vectors) if not isinstance(vectors, list) or vectors else np.empty((0, 0))
    if arr.dtype == object:  # ragged containers, e.g. a polars list column
        arr = np.stack([np.asarray(v, dtype=np.float32) for v in arr]) if len(arr) else (
            np.empty((0, dim or 0))
        )
    x = np.asarray(arr, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :] if x.size else np.empty((0, dim or 0), dtype=np.float32)
    if x.shape[0] == 0 and dim is not None:
        x = np.empty((0, dim), dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must be 1-D or 2-D, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"vectors have dimension {x.shape[1]}, the index has {dim}")
    return np.ascontiguousarray(l2_normalise(x), dtype=np.float32)


def source_of(artwork_id: str) -> str:
    """The museum prefix of an artwork id: ``"met:436535"`` -> ``"met"``."""
    return artwork_id.split(":", 1)[0]


_SIMS_BLOCK = 8 << 20  # similarities (float32) computed and partitioned at once


def brute_force_topk(
    corpus: np.ndarray, queries: np.ndarray, k: int, batch: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (cosine on unit rows), batched: (row indices, scores).

    A batch is at most ``batch`` queries and at most `_SIMS_BLOCK` similarities (queries x
    corpus rows): a batch of 1,024 queries over 50,000 works was a 200 MB matrix written and
    partitioned out of cache, 2-4x slower per query than blocks of ~32 MB
    (`benchmarks/bench_ann_update.py`)."""
    corpus = np.ascontiguousarray(corpus, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, corpus.shape[0])
    batch = max(1, min(batch, _SIMS_BLOCK // max(corpus.shape[0], 1)))
    out_idx = np.empty((queries.shape[0], k), dtype=np.int64)
    out_sc = np.empty((queries.shape[0], k), dtype=np.float32)
    for start in range(0, queries.shape[0], batch):
        sims = queries[start : start + batch] @ corpus.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else (
            np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
        )
        part_sc = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_sc, axis=1, kind="stable")
        out_idx[start : start + batch] = np.take_along_axis(part, order, axis=1)
        out_sc[start : start + batch] = np.take_along_axis(part_sc, order, axis=1)
    return out_idx, out_sc


def synthetic_clustered_vectors(
    n: int,
    dim: int = 256,
    n_clusters: int = 1000,
    seed: int = 0,
    local_rank: int = 32,
    spread: tuple[float, float] = (0.6, 1.2),
    isotropic: float = 0.25,
) -> np.ndarray:
    """Embedding-like unit vectors for tests and benchmarks (uniform random data is useless
    for measuring recall).

    ``n_clusters`` centres uniform on the sphere; cluster sizes log-normal (a few big
    clusters, a long tail); each point is ``centre + r_c * (low-rank Gaussian in a random
    ``local_rank``-dim subspace of the cluster + ``isotropic`` x full-dim Gaussian noise)``
    with ``r_c`` drawn per cluster from ``spread``, then L2-normalised. The expected cosine to
    the cluster centre is about ``1 / sqrt(1 + r_c**2)`` (0.64..0.86 with the defaults).
    """
    rng = np.random.default_rng(seed)
    n_clusters = max(1, min(n_clusters, n))
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0.0, 1.0, n_clusters)
    assign = rng.choice(n_clusters, size=n, p=weights / weights.sum())
    r = rng.uniform(*spread, n_clusters).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    rank = min(local_rank, dim)
    iso_scale = isotropic / np.sqrt(dim)
    low_scale = np.sqrt(max(0.0, 1.0 - isotropic**2)) / np.sqrt(rank)
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(n_clusters + 1))
    for c in range(n_clusters):
        rows = order[bounds[c] : bounds[c + 1]]
        if rows.size == 0:
            continue
        basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)).astype(np.float32))
        z = rng.standard_normal((rows.size, rank)).astype(np.float32) * low_scale
        noise = z @ basis.T + rng.standard_normal((rows.size, dim)).astype(np.float32) * iso_scale
        out[rows] = centres[c] + r[c] * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out




_TIE_TOLERANCE = 1e-5  # float32 dot products of equal vectors differ in the last bits


def recall_vs_exact(
    index: AnnIndex,
    ids: Sequence[str],
    vectors: Any,
    sample: int = 1000,
    k: int = 10,
    seed: int = 0,
) -> float:
    """How much of exact search the index finds: the mean fraction of each query's exact top-k
    (over ``(ids, vectors)``) that is in the index's top-k. (Not the retrieval metric of
    ``core.ml.metrics.recall_at_k``, which is a hit rate of positives.)

    ``sample`` query rows are drawn (without replacement, or all rows if fewer) from
    ``vectors``; their exact top-k among all ``vectors`` (numpy, batched) is compared with the
    index's top-k. The query itself counts as a neighbour on both sides. Ties count as found: a
    returned work whose similarity equals the exact k-th one is as near as the work exact search
    happened to list (collections repeat texts and images: "Coin", "Fragment"...).
    """
    x = normalize(vectors)
    ids_arr = np.asarray(list(ids), dtype=object)
    if len(ids_arr) != x.shape[0]:
        raise ValueError("ids and vectors differ in length")
    rng = np.random.default_rng(seed)
    rows = (
        np.arange(x.shape[0])
        if x.shape[0] <= sample
        else rng.choice(x.shape[0], size=sample, replace=False)
    )
    k = min(k, x.shape[0])
    _, exact_sims = brute_force_topk(x, x[rows], k)
    approx_ids, _ = index.query(x[rows], k)
    row_of = {artwork_id: i for i, artwork_id in enumerate(ids_arr.tolist())}
    hits = 0
    for r, query_row in enumerate(rows):
        found = [row_of[a] for a in dict.fromkeys(approx_ids[r].tolist()) if a in row_of]
        if not found:
            continue
        sims = x[found] @ x[query_row]
        hits += min(k, int((sims >= exact_sims[r, k - 1] - _TIE_TOLERANCE).sum()))
    return hits / (len(rows) * k)
