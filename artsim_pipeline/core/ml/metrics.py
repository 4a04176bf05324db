"""Retrieval metrics on a held-out split of `weak_pairs`, and the figures that show them.

Definitions (used everywhere in artsim; the MLflow metric names are the dict keys below):

* **Candidates** of a split: every artwork that appears in at least one pair of that split
  (either side, any label) *and* has a vector. Artworks are never in two splits, so a split's
  candidates form a closed world.
* **Queries**: the candidates with at least one positive (label 1) partner in the same split.
  Each query ranks all *other* candidates (itself excluded) by cosine similarity, best first;
  ties are broken by candidate order (stable sort), so results are deterministic.
* ``recall_at_k`` is the **hit rate**: the fraction of queries with at least one positive among
  their top k. (It is not "fraction of all positives retrieved"; with few positives per query the
  two coincide.)
* ``map_at_k`` is mean average precision at k: for one query,
  ``AP@k = sum_{i<=k} P@i * rel_i / min(k, n_positives)``, averaged over queries.
* Negatives in `similarity_histograms` are the split's label-0 pairs (mined dissimilar pairs).

Errors are raised, never turned into metrics: a split with no queries raises `ValueError`.
Vectors are expected L2-normalised (cosine = dot product); they are re-normalised defensively.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from artsim_pipeline.core.vectors import l2_normalise

DEFAULT_KS = (1, 5, 10)
DEFAULT_MAP_K = 10
CURVE_KS = (1, 2, 3, 5, 10, 20, 50)
#: Score-block size (queries x candidates) of `task_per_query`: 4M floats = 16 MB a block.
_BLOCK_ELEMENTS = 4_000_000


# ----------------------------------------------------------------------------------------------
# Low level: score matrix + relevance mask


def _check_scores(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.ndim != 2 or scores.shape != relevant.shape:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape} must be equal 2-D shapes")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return scores, relevant


def _ranked_relevance(scores: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Boolean [q, min(k, c)]: relevance of each query's top-k candidates, best first.

    Candidates scored -inf (e.g. the query itself) are never counted as relevant.
    """
    q, c = scores.shape
    k = min(k, c)
    if k <= 0:
        return np.zeros((q, 0), dtype=bool)
    # Stable order: argsort of the negated scores, ties keep candidate order.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    ranked = np.take_along_axis(relevant, order, axis=1)
    finite = np.isfinite(np.take_along_axis(scores, order, axis=1))
    return ranked & finite


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Hit rate: fraction of queries (rows with >=1 relevant) with a relevant item in the top k.

    `scores` [q, c] (higher is better; -inf excludes a candidate), `relevant` [q, c] bool.
    """
    scores, relevant = _check_scores(scores, relevant)
    rows = relevant.any(axis=1)
    if not rows.any():
        raise ValueError("no query has a relevant candidate")
    ranked = _ranked_relevance(scores[rows], relevant[rows], k)
    return float(ranked.any(axis=1).mean())


def _average_precision(ranked: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    ranked = ranked[:, :k].astype(np.float64)
    if ranked.shape[1] == 0:
        return np.zeros(ranked.shape[0])
    precision = np.cumsum(ranked, axis=1) / np.arange(1, ranked.shape[1] + 1)
    return (precision * ranked).sum(axis=1) / np.minimum(k, n_relevant)


def map_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = DEFAULT_MAP_K) -> float:
    """Mean over queries of AP@k = sum_{i<=k} P@i * rel_i / min(k, n_relevant)."""
    scores, relevant = _check_scores(scores, relevant)
    rows = relevant.any(axis=1)
    if not rows.any():
        raise ValueError("no query has a relevant candidate")
    scores, relevant = scores[rows], relevant[rows]
    # Relevant candidates scored -inf cannot be retrieved but still count in the denominator.
    n_rel = relevant.sum(axis=1)
    ranked = _ranked_relevance(scores, relevant, k)
    return float(_average_precision(ranked, n_rel, k).mean())


# ----------------------------------------------------------------------------------------------
# Split-level tasks


@dataclass(frozen=True)
class RetrievalTask:
    """The closed retrieval world of one split.

    `index`: positions of the candidates in the caller's `ids`/vectors; `positives`: [m, m]
    boolean *sparse* (scipy CSR) matrix, symmetric, False on the diagonal, so memory grows with
    the pairs, not with m^2; `negatives`: (i, j) positions into the candidates of the label-0
    pairs, with their weights.
    """

    split: str
    candidate_ids: list[str]
    index: np.ndarray
    positives: Any
    negative_pairs: np.ndarray
    positive_pairs: np.ndarray

    @property
    def is_query(self) -> np.ndarray:
        """Bool per candidate: has at least one positive partner in the split."""
        return np.diff(self.positives.indptr) > 0

    @property
    def n_queries(self) -> int:
        return int(self.is_query.sum())


def retrieval_task(ids: Sequence[str], pairs, split: str = "test") -> RetrievalTask:
    """Build the candidates/positives of `split` from a polars `weak_pairs` frame.

    Pairs whose artworks are not in `ids` (no vector) are ignored.
    """
    import polars as pl

    position = {artwork_id: i for i, artwork_id in enumerate(ids)}
    if len(position) != len(ids):
        raise ValueError("ids contain duplicates")
    missing = {"artwork_id_a", "artwork_id_b", "label", "split"} - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs lack columns {sorted(missing)}")
    sub = pairs.filter(pl.col("split") == split).select("artwork_id_a", "artwork_id_b", "label")
    a = np.array([position.get(x, -1) for x in sub["artwork_id_a"].to_list()], dtype=np.int64)
    b = np.array([position.get(x, -1) for x in sub["artwork_id_b"].to_list()], dtype=np.int64)
    label = sub["label"].to_numpy().astype(np.int64)
    keep = (a >= 0) & (b >= 0) & (a != b)
    a, b, label = a[keep], b[keep], label[keep]
    index = np.unique(np.concatenate([a, b]))  # sorted positions into ids
    local = np.full(len(ids), -1, dtype=np.int64)
    local[index] = np.arange(len(index))
    la, lb = local[a], local[b]
    from scipy import sparse

    m = len(index)
    pos = label == 1
    rows = np.concatenate([la[pos], lb[pos]])
    cols = np.concatenate([lb[pos], la[pos]])
    positives = sparse.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(m, m), dtype=bool)
    positives.sum_duplicates()  # a pair listed twice is one positive; a == b was dropped above
    return RetrievalTask(
        split=split,
        candidate_ids=[ids[i] for i in index],
        index=index,
        positives=positives,
        negative_pairs=np.stack([la[~pos], lb[~pos]], axis=1) if m else np.zeros((0, 2), np.int64),
        positive_pairs=np.stack([la[pos], lb[pos]], axis=1) if m else np.zeros((0, 2), np.int64),
    )


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return l2_normalise(vectors)


def task_metrics(
    task: RetrievalTask,
    candidate_vectors: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    map_k: int = DEFAULT_MAP_K,
    chunk: int = 2048,
    query_mask: np.ndarray | None = None,
) -> dict[str, float]:
    """recall_at_{k} and map_at_{map_k} for vectors of `task`'s candidates (in task order).

    `query_mask` (bool per candidate) keeps only those queries (e.g. the real-photo works);
    every candidate still competes as an answer.
    """
    per_query = task_per_query(task, candidate_vectors, ks, map_k, chunk, query_mask)
    return {name: float(values.mean()) for name, values in per_query.items()}


def task_per_query(
    task: RetrievalTask,
    candidate_vectors: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    map_k: int = DEFAULT_MAP_K,
    chunk: int = 2048,
    query_mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-query hit (``recall_at_{k}``, 0/1) and ``map_at_{map_k}`` (AP) arrays, queries in
    candidate order: the figures `task_metrics` averages, for standard errors and paired tests."""
    vectors = _normalise(candidate_vectors)
    m = len(task.index)
    if vectors.shape[0] != m:
        raise ValueError(f"expected {m} candidate vectors, got {vectors.shape[0]}")
    is_query = task.is_query
    if query_mask is not None:
        is_query &= np.asarray(query_mask, dtype=bool)
    queries = np.flatnonzero(is_query)
    if len(queries) == 0:
        raise ValueError(f"split {task.split!r} has no artwork with a positive partner")
    top = max(max(ks), map_k)
    hits: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    aps: list[np.ndarray] = []
    # rows per block: a block's scores are chunk x m, so memory stays O(chunk m) at any m
    chunk = max(16, min(chunk, _BLOCK_ELEMENTS // max(m, 1)))
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        scores = vectors[q] @ vectors.T
        scores[np.arange(len(q)), q] = -np.inf  # never retrieve the query itself
        relevant = task.positives[q].toarray()  # chunk x m: memory O(chunk m), never m x m
        if m - 1 > top:
            # Partial selection first (O(m)), then a stable sort of the short list.
            part = np.argpartition(-scores, top, axis=1)[:, : top + 1]
            part.sort(axis=1)  # candidate order, so the stable sort below breaks ties the same way
            sub_scores = np.take_along_axis(scores, part, axis=1)
            sub_rel = np.take_along_axis(relevant, part, axis=1)
            ranked = _ranked_relevance(sub_scores, sub_rel, top)
        else:
            ranked = _ranked_relevance(scores, relevant, top)
        for k in ks:
            hits[k].append(ranked[:, :k].any(axis=1).astype(np.float64))
        aps.append(_average_precision(ranked, relevant.sum(axis=1), map_k).astype(np.float64))
    out = {f"recall_at_{k}": np.concatenate(hits[k]) for k in ks}
    out[f"map_at_{map_k}"] = np.concatenate(aps)
    return out


def evaluate_retrieval(
    ids: Sequence[str],
    vectors: np.ndarray,
    pairs,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    map_k: int = DEFAULT_MAP_K,
    query_ids: set[str] | None = None,
) -> dict[str, float]:
    """Retrieval metrics of `vectors` (rows aligned with `ids`) on one split of `pairs`.

    Returns ``recall_at_1/5/10``, ``map_at_10``, ``n_queries``, ``n_candidates``. With
    `query_ids`, only those artworks are queries (all candidates are still ranked).
    """
    vectors = np.asarray(vectors)
    if vectors.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {vectors.shape[0]} vectors")
    task = retrieval_task(ids, pairs, split)
    mask = None if query_ids is None else np.array([c in query_ids for c in task.candidate_ids], dtype=bool)
    out = task_metrics(task, vectors[task.index], ks=ks, map_k=map_k, query_mask=mask)
    is_query = task.is_query
    out["n_queries"] = int((is_query if mask is None else is_query & mask).sum())
    out["n_candidates"] = len(task.index)
    return out


def recall_curve(
    ids: Sequence[str], vectors: np.ndarray, pairs, split: str = "test", ks: Sequence[int] = CURVE_KS
) -> dict[int, float]:
    """recall@k for each k in `ks` (the data of the recall@k plot)."""
    metrics = evaluate_retrieval(ids, vectors, pairs, split=split, ks=ks)
    return {k: metrics[f"recall_at_{k}"] for k in ks}


def random_vectors_baseline(
    ids: Sequence[str],
    pairs,
    split: str = "test",
    dim: int = 256,
    n_repeats: int = 5,
    seed: int = 0,
    ks: Sequence[int] = DEFAULT_KS,
    map_k: int = DEFAULT_MAP_K,
) -> dict[str, float]:
    """The same metrics for random unit vectors, averaged over `n_repeats` seeded draws."""
    task = retrieval_task(ids, pairs, split)
    rng = np.random.default_rng(seed)
    runs = [
        task_metrics(task, rng.standard_normal((len(task.index), dim)).astype(np.float32), ks, map_k)
        for _ in range(n_repeats)
    ]
    out = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    out["n_queries"] = task.n_queries
    out["n_candidates"] = len(task.index)
    return out


# ----------------------------------------------------------------------------------------------
# Positive vs negative cosine distributions


def similarity_histograms(
    ids: Sequence[str],
    vectors: np.ndarray,
    pairs,
    split: str = "test",
    bins: int = 40,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> dict:
    """Cosine similarity of the split's positive pairs vs its negative (label 0) pairs.

    Returns ``edges`` (bins + 1), ``positive``/``negative`` counts, the raw cosine arrays
    ``positive_cosines``/``negative_cosines``, their means, counts, and ``auc``: the probability
    that a random positive pair scores above a random negative pair (ties count half).
    """
    vectors = np.asarray(vectors)
    if vectors.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {vectors.shape[0]} vectors")
    task = retrieval_task(ids, pairs, split)
    v = _normalise(vectors[task.index])
    pos = task.positive_pairs
    neg = task.negative_pairs
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"split {split!r} needs positive and negative pairs ({len(pos)}, {len(neg)})")
    pos_cos = np.einsum("ij,ij->i", v[pos[:, 0]], v[pos[:, 1]]).astype(np.float64)
    neg_cos = np.einsum("ij,ij->i", v[neg[:, 0]], v[neg[:, 1]]).astype(np.float64)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    return {
        "edges": edges,
        "positive": np.histogram(np.clip(pos_cos, *value_range), edges)[0],
        "negative": np.histogram(np.clip(neg_cos, *value_range), edges)[0],
        "positive_cosines": pos_cos,
        "negative_cosines": neg_cos,
        "positive_mean": float(pos_cos.mean()),
        "negative_mean": float(neg_cos.mean()),
        "n_positive": len(pos_cos),
        "n_negative": len(neg_cos),
        "auc": _auc(pos_cos, neg_cos),
    }


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC via ranks (ties get average ranks)."""
    values = np.concatenate([pos, neg])
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    # average ranks over ties
    _, start, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n_pos, n_neg = len(pos), len(neg)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ----------------------------------------------------------------------------------------------
# Figures (matplotlib's object API on the Agg canvas: no pyplot, no global backend switch)


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib ships with mlflow
        raise RuntimeError("matplotlib is required for the metric figures") from exc
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    """A matplotlib figure rendered as PNG, in memory."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_recall_curve(curves: Mapping[str, Mapping[int, float]], title: str = "Test recall@k") -> bytes:
    """One line per model (e.g. {"trained": {1: .4, 5: .8}, "raw": ..., "random": ...}) -> PNG bytes."""
    fig = _figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    for name, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k (hit rate)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return png_bytes(fig)


def plot_similarity_histograms(histograms: Mapping[str, Mapping], title: str = "Cosine: positive vs negative pairs") -> bytes:
    """One panel per model from `similarity_histograms` outputs ({"raw": h1, "trained": h2}) -> PNG bytes."""
    n = max(1, len(histograms))
    fig = _figure(4.5 * n, 3.6)
    for i, (name, h) in enumerate(histograms.items()):
        ax = fig.add_subplot(1, n, i + 1)
        edges = np.asarray(h["edges"])
        widths = np.diff(edges)
        for key, colour in (("positive", "tab:green"), ("negative", "tab:red")):
            counts = np.asarray(h[key], dtype=np.float64)
            density = counts / max(counts.sum(), 1) / widths
            ax.bar(edges[:-1], density, width=widths, align="edge", alpha=0.5, color=colour,
                   label=f"{key} (n={int(counts.sum())}, mean={h[key + '_mean']:.2f})")
        ax.set_title(f"{name}  AUC={h['auc']:.3f}")
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return png_bytes(fig)
