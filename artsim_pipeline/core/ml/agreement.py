"""Metadata agreement of nearest neighbours: a check of vectors that training did not optimise.

Weak-pair recall measures the signal the similarity head is trained on, so a head can win it
and still give curators worse neighbours. Agreement asks something else: among the ``k``
nearest works of a query, the share that has the query's department (classification, culture,
period). A neighbour agrees when it holds the same value (compared case- and space-insensitively);
a neighbour without the value does not agree; a query without the value is not a query.

Pieces (no Dagster, no I/O):

* `agreement_scores`: per-query precision@k of one attribute, for one set of vectors.
* `agreement_table`: every (group, attribute) criterion for several named sets of vectors, with
  the number of queries, the mean and its standard error, and the paired difference to a
  reference set (mean and standard error of the per-query differences).
* `gate_decision`: serve trained vectors only when they beat the reference on weak-pair recall
  and lose no agreement criterion by more than the criterion's standard error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from artsim_pipeline.core.vectors import l2_normalise

ATTRIBUTES = ("department", "classification", "culture", "period")
DEFAULT_K = 10


def normalise_label(value: object) -> str | None:
    """Comparable form of a metadata value: trimmed, lower case, inner spaces collapsed; blank -> None."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = " ".join(str(value).split()).lower()
    return text or None


def nearest_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int = DEFAULT_K, chunk: int = 1024) -> np.ndarray:
    """[len(queries), k] positions of each query row's ``k`` most cosine-similar other rows
    (never the query itself), best first; ties go to the lower position."""
    unit = l2_normalise(vectors)
    n = unit.shape[0]
    if n < 2:
        return np.zeros((len(queries), 0), dtype=np.int64)
    k = min(k, n - 1)
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = np.asarray(queries[start : start + chunk], dtype=np.int64)
        scores = unit[q] @ unit.T
        scores[np.arange(len(q)), q] = -np.inf
        # a stable sort on -score keeps lower positions first among equal scores
        out[start : start + len(q)] = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return out


def agreement_scores(
    vectors: np.ndarray, labels: Sequence[object], query_mask: np.ndarray | None = None, k: int = DEFAULT_K,
    neighbours: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(query positions, per-query share of the ``k`` nearest rows with the query's label).

    Rows of `vectors` are the candidates; queries are the rows selected by `query_mask` (all by
    default) that have a label. `neighbours` ([n, k] `nearest_neighbours` of every row) lets
    several attributes and groups share one neighbour search.
    """
    values = [normalise_label(v) for v in labels]
    if len(values) != len(vectors):
        raise ValueError(f"{len(values)} labels but {len(vectors)} vectors")
    has_value = np.array([v is not None for v in values], dtype=bool)
    mask = has_value if query_mask is None else (has_value & np.asarray(query_mask, dtype=bool))
    queries = np.flatnonzero(mask)
    if len(queries) == 0 or len(values) < 2:
        return queries, np.zeros(0, dtype=np.float64)
    codes = {v: i for i, v in enumerate(sorted({v for v in values if v is not None}))}
    coded = np.array([codes[v] if v is not None else -1 for v in values], dtype=np.int64)
    found = nearest_neighbours(vectors, queries, k) if neighbours is None else neighbours[queries]
    agree = coded[found] == coded[queries][:, None]
    return queries, agree.mean(axis=1)


def _stderr(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


@dataclass(frozen=True)
class Criterion:
    """One agreement figure: attribute x group x vectors."""

    group: str
    attribute: str
    vectors: str
    n_queries: int
    precision: float
    stderr: float
    diff_vs_reference: float = math.nan  # mean per-query difference to the reference vectors
    diff_stderr: float = math.nan


def agreement_table(
    vector_sets: Mapping[str, np.ndarray],
    labels: Mapping[str, Sequence[object]],
    groups: Mapping[str, np.ndarray],
    reference: str = "backbone",
    k: int = DEFAULT_K,
) -> list[Criterion]:
    """Agreement precision@k for every vectors x group x attribute.

    `vector_sets`: name -> [n, d] rows over the same candidate works; `labels`: attribute ->
    n values; `groups`: group name -> boolean mask of the queries it holds (e.g. stand-in works,
    real-photo works). Each set is compared with `reference` query by query.
    """
    if reference not in vector_sets:
        raise ValueError(f"reference vectors {reference!r} not among {sorted(vector_sets)}")
    # one neighbour search per set of vectors, shared by every group and attribute
    neighbours = {name: nearest_neighbours(vectors, np.arange(len(vectors)), k) for name, vectors in vector_sets.items()}
    out: list[Criterion] = []
    for group, mask in groups.items():
        for attribute, values in labels.items():
            per_set = {name: agreement_scores(vectors, values, mask, k, neighbours[name]) for name, vectors in vector_sets.items()}
            _, base = per_set[reference]
            for name, (queries, scores) in per_set.items():
                n = len(queries)
                mean = float(scores.mean()) if n else math.nan
                diff, diff_se = math.nan, math.nan
                if n and name != reference:
                    delta = scores - base
                    diff, diff_se = float(delta.mean()), _stderr(delta)
                out.append(Criterion(group, attribute, name, n, mean, _stderr(scores) if n else math.nan, diff, diff_se))
    return out


@dataclass
class GateDecision:
    """Whether trained vectors may be served, and why not."""

    serve_trained: bool
    recall_gain: float
    failed: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def reason(self) -> str:
        if self.serve_trained:
            return f"trained vectors beat the backbone on weak-pair recall@10 (+{100 * self.recall_gain:.1f} points) and lose no agreement criterion ({self.checked} checked)"
        return "; ".join(self.failed)


def gate_decision(
    recall_trained: float,
    recall_backbone: float,
    criteria: Sequence[Criterion],
    trained: str = "trained",
    min_queries: int = 2,
) -> GateDecision:
    """Trained vectors are served only when they beat the backbone on weak-pair recall@10 and,
    on every agreement criterion with at least `min_queries` queries, do not fall below the
    backbone by more than the standard error of the per-query difference."""
    gain = float(recall_trained - recall_backbone)
    failed: list[str] = []
    if not gain > 0:
        failed.append(f"weak-pair recall@10: trained {recall_trained:.3f} does not beat backbone {recall_backbone:.3f}")
    checked = 0
    for c in criteria:
        if c.vectors != trained or c.n_queries < min_queries or math.isnan(c.diff_vs_reference):
            continue
        checked += 1
        tolerance = 0.0 if math.isnan(c.diff_stderr) else c.diff_stderr
        if c.diff_vs_reference < -tolerance:
            failed.append(
                f"{c.attribute} agreement on {c.group} works: trained {c.precision:.3f} is "
                f"{-c.diff_vs_reference:.3f} below the backbone (standard error {tolerance:.3f}, {c.n_queries} queries)"
            )
    return GateDecision(serve_trained=not failed, recall_gain=gain, failed=failed, checked=checked)


WEAK_PAIR_CRITERIA = ("recall_at_1", "recall_at_5", "recall_at_10", "map_at_10")
ALL_WORKS = "all"
EVALUATION_COLUMNS = ("model", "group", "criterion", "value", "n_queries", "stderr", "diff_vs_backbone", "diff_stderr")


def attribute_labels(artworks, ids: Sequence[str]) -> dict[str, list[str | None]]:
    """Department, classification, culture and period (the epoch of `date_begin`..`date_end`)
    of each id, normalised with `normalise_label` (None when unknown). `artworks` is a polars
    frame of the unified schema."""
    from artsim_pipeline.core.ml.classifiers import period_label

    rows = {r["artwork_id"]: r for r in artworks.select(
        "artwork_id", "department", "classification", "culture", "date_begin", "date_end").iter_rows(named=True)}
    out: dict[str, list[str | None]] = {name: [] for name in ATTRIBUTES}
    for artwork_id in ids:
        row = rows.get(artwork_id) or {}
        for name in ("department", "classification", "culture"):
            out[name].append(normalise_label(row.get(name)))
        out["period"].append(normalise_label(period_label(row.get("date_begin"), row.get("date_end"))))
    return out


def evaluation_rows(
    ids: Sequence[str],
    vector_sets: Mapping[str, np.ndarray],
    pairs,
    labels: Mapping[str, Sequence[object]],
    groups: Mapping[str, set[str]],
    split: str = "test",
    reference: str = "backbone",
    k: int = DEFAULT_K,
) -> list[dict]:
    """The evaluation table: for each vectors x group, weak-pair recall@1/5/10 and mAP@10 and
    metadata agreement precision@k per attribute, over the works of `split` (the candidates of
    the split's retrieval task), with the number of queries behind each figure.

    `groups` maps a group name to the artwork ids it holds (e.g. stand-in and real-photo works);
    an ``"all"`` group is added. Groups or criteria without queries are left out.
    """
    from artsim_pipeline.core.ml.metrics import retrieval_task, task_per_query

    task = retrieval_task(ids, pairs, split)
    candidates = task.candidate_ids
    all_groups = {ALL_WORKS: set(candidates), **groups}
    masks = {name: np.array([c in members for c in candidates], dtype=bool) for name, members in all_groups.items()}
    masks = {name: mask for name, mask in masks.items() if mask.any()}
    is_query = task.is_query
    rows: list[dict] = []
    for group, mask in masks.items():
        n_weak = int((is_query & mask).sum())
        if n_weak == 0:
            continue
        per_model = {model: task_per_query(task, np.asarray(vectors)[task.index], query_mask=mask)
                     for model, vectors in vector_sets.items()}
        for model, scores in per_model.items():
            for criterion in WEAK_PAIR_CRITERIA:
                values = scores[criterion]
                diff, diff_se = math.nan, math.nan
                if model != reference and reference in per_model:
                    delta = values - per_model[reference][criterion]
                    diff, diff_se = float(delta.mean()), _stderr(delta)
                rows.append({"model": model, "group": group, "criterion": f"weak_pair_{criterion}", "value": float(values.mean()),
                             "n_queries": n_weak, "stderr": _stderr(values), "diff_vs_backbone": diff, "diff_stderr": diff_se})
    candidate_labels = {name: [values[i] for i in task.index] for name, values in labels.items()}
    candidate_vectors = {model: np.asarray(vectors)[task.index] for model, vectors in vector_sets.items()}
    for c in agreement_table(candidate_vectors, candidate_labels, masks, reference=reference, k=k):
        if c.n_queries:
            rows.append({"model": c.vectors, "group": c.group, "criterion": f"agreement_{c.attribute}", "value": c.precision,
                         "n_queries": c.n_queries, "stderr": c.stderr, "diff_vs_backbone": c.diff_vs_reference,
                         "diff_stderr": c.diff_stderr})
    return rows


def gate_from_rows(rows: Sequence[Mapping], trained: str = "trained", reference: str = "backbone") -> GateDecision:
    """`gate_decision` over an evaluation table (`evaluation_rows`): weak-pair recall@10 of all
    works, and every agreement criterion of every group."""
    def recall(model: str) -> float:
        for r in rows:
            if r["model"] == model and r["group"] == ALL_WORKS and r["criterion"] == "weak_pair_recall_at_10":
                return float(r["value"])
        raise ValueError(f"the evaluation has no weak-pair recall@10 of {model!r} over all works")

    criteria = [
        Criterion(r["group"], r["criterion"].removeprefix("agreement_"), r["model"], int(r["n_queries"]), float(r["value"]),
                  float(r["stderr"]), float(r["diff_vs_backbone"]), float(r["diff_stderr"]))
        for r in rows if str(r["criterion"]).startswith("agreement_")
    ]
    return gate_decision(recall(trained), recall(reference), criteria, trained=trained)


__all__ = [
    "ALL_WORKS", "ATTRIBUTES", "Criterion", "EVALUATION_COLUMNS", "WEAK_PAIR_CRITERIA", "attribute_labels",
    "evaluation_rows", "gate_from_rows", "GateDecision", "agreement_scores", "agreement_table", "gate_decision",
    "nearest_neighbours", "normalise_label",
]
