"""Clusters of artworks in the learned similarity space, and what each cluster holds (no Dagster).

- :func:`cluster_vectors` - k-means (scikit-learn) over L2-normalised artwork vectors
  (:func:`fit_clusters` also returns the centroids, and :func:`assign_to_centroids` puts new
  works into the nearest existing cluster without fitting again);
- :func:`summarise_clusters` - one row per cluster for curators: size, top makers,
  departments, cultures, museums, date span and the works nearest the centroid.

Cluster numbers are stable for the same input and seed and ordered by size: cluster 0 is the
largest (ties broken by the smallest member id).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from artsim_pipeline.core.code_version import code_fingerprint
from artsim_pipeline.core.features import as_matrix, combined_fingerprint, frame_fingerprint
from artsim_pipeline.core.incremental import FULL, MAX_INCREMENTAL_FRACTION, Plan, fingerprints, plan_update
from artsim_pipeline.core.names import normalise_artist
from artsim_pipeline.core.vectors import l2_normalise

MAX_CLUSTERS = 50
MINIBATCH_ABOVE = 50_000  # rows; MiniBatchKMeans beyond this

LABELS_SCHEMA: dict[str, pl.DataType] = {
    "artwork_id": pl.String(),
    "cluster": pl.Int32(),
    "distance": pl.Float32(),
}

SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "cluster": pl.Int32(),
    "size": pl.Int64(),
    "top_makers": pl.List(pl.String()),
    "top_departments": pl.List(pl.String()),
    "top_cultures": pl.List(pl.String()),
    "top_classifications": pl.List(pl.String()),
    "museums": pl.List(pl.String()),
    "date_begin": pl.Int32(),
    "date_end": pl.Int32(),
    "date_span": pl.String(),
    "representative_ids": pl.List(pl.String()),
    "representative_titles": pl.List(pl.String()),
}


def default_n_clusters(n: int, max_clusters: int = MAX_CLUSTERS) -> int:
    """``round(sqrt(n / 2))``, at least 2 (when n >= 2), at most ``max_clusters`` and n."""
    if n <= 1:
        return max(n, 0)
    return int(min(max_clusters, n, max(2, round(math.sqrt(n / 2)))))


def _normalised(vectors: Any) -> np.ndarray:
    return l2_normalise(as_matrix(vectors), zero_rows="keep")


def cluster_vectors(
    ids: Sequence[str],
    vectors: Any,
    n_clusters: int | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """k-means cluster labels: a frame ``artwork_id``, ``cluster`` (Int32), ``distance``.

    Vectors are L2-normalised first (so Euclidean k-means follows cosine similarity);
    ``distance`` is the Euclidean distance to the cluster centroid (smaller = more typical).
    ``n_clusters`` defaults to :func:`default_n_clusters` and is capped by the number of
    distinct vectors. ``KMeans(n_init=4, random_state=seed)`` (``MiniBatchKMeans`` above
    ``MINIBATCH_ABOVE`` rows): the same input and seed give the same labels.
    """
    return fit_clusters(ids, vectors, n_clusters, seed)[0]


def fit_clusters(
    ids: Sequence[str],
    vectors: Any,
    n_clusters: int | None = None,
    seed: int = 0,
) -> tuple[pl.DataFrame, np.ndarray]:
    """:func:`cluster_vectors`' labels and the centroids they were assigned to: a float32
    ``(k, dim)`` array whose row ``c`` is cluster ``c``'s centroid (what
    :func:`assign_to_centroids` places new works by)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    ids = [str(i) for i in ids]
    if len(ids) == 0:
        return pl.DataFrame(schema=LABELS_SCHEMA), np.zeros((0, 0), np.float32)
    x = _normalised(vectors)
    if x.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {x.shape[0]} vectors")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    k = default_n_clusters(len(ids)) if n_clusters is None else int(n_clusters)
    if k < 1:
        raise ValueError("n_clusters must be >= 1")
    n_distinct = np.unique(x, axis=0).shape[0] if x.shape[0] <= MINIBATCH_ABOVE else x.shape[0]
    k = min(k, n_distinct)
    if k == 1:
        centres = x.mean(axis=0, keepdims=True)
        labels = np.zeros(len(ids), dtype=np.int64)
    else:
        if x.shape[0] > MINIBATCH_ABOVE:
            model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
        else:
            model = KMeans(n_clusters=k, random_state=seed, n_init=4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # BLAS noise on some platforms
            labels = model.fit_predict(x)
        centres = model.cluster_centers_
    dist = np.linalg.norm(x - centres[labels], axis=1)
    # renumber by size (largest first), ties by the smallest member id
    order_key: dict[int, tuple[int, str]] = {}
    for lab, aid in zip(labels.tolist(), ids, strict=True):
        size, first = order_key.get(lab, (0, aid))
        order_key[lab] = (size + 1, min(first, aid))
    ranked = sorted(order_key, key=lambda lab: (-order_key[lab][0], order_key[lab][1]))
    remap = {old: new for new, old in enumerate(ranked)}
    frame = pl.DataFrame(
        {
            "artwork_id": ids,
            "cluster": [remap[lab] for lab in labels.tolist()],
            "distance": dist.astype(np.float32),
        },
        schema=LABELS_SCHEMA,
    )
    return frame, np.asarray(centres[ranked], dtype=np.float32)


def assign_to_centroids(vectors: Any, centroids: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """``(cluster int32, distance float32)`` of each (L2-normalised) vector's nearest centroid,
    by the Euclidean distance :func:`fit_clusters` measures; ties go to the lower cluster number."""
    centroids = np.asarray(centroids, dtype=np.float32)
    x = _normalised(vectors).astype(np.float32, copy=False)
    if x.shape[0] == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    if centroids.ndim != 2 or centroids.shape[0] == 0 or centroids.shape[1] != x.shape[1]:
        raise ValueError(f"centroids of shape {centroids.shape} do not fit vectors of dimension {x.shape[1]}")
    c_sq = (centroids.astype(np.float64) ** 2).sum(axis=1)
    labels = np.empty(x.shape[0], np.int32)
    dist = np.empty(x.shape[0], np.float32)
    for start in range(0, x.shape[0], batch):
        part = x[start:start + batch].astype(np.float64)
        sq = (part ** 2).sum(axis=1, keepdims=True) - 2.0 * part @ centroids.T.astype(np.float64) + c_sq
        best = np.argmin(sq, axis=1)
        labels[start:start + batch] = best
        dist[start:start + batch] = np.sqrt(np.maximum(sq[np.arange(len(best)), best], 0.0))
    return labels, dist


def _top(values: list[Any], top: int) -> list[str]:
    """Most common non-empty values, ties broken alphabetically."""
    counts = Counter(v.strip() for v in values if isinstance(v, str) and v.strip())
    return [v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


def _top_makers(artist_lists: list[Any], top: int, keys: dict[str, str | None] | None = None) -> list[str]:
    """Most frequent identifiable makers (by :func:`normalise_artist` key, counted once per
    work), each shown under its most frequent spelling. ``keys`` caches the key of each name
    across calls (a maker's name recurs in many works)."""
    keys = {} if keys is None else keys
    works_per_key: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    for names in artist_lists:
        seen = set()
        for name in names or []:
            key = keys[name] if name in keys else keys.setdefault(name, normalise_artist(name))
            if key is None:
                continue
            spellings.setdefault(key, Counter())[name.strip()] += 1
            if key not in seen:
                seen.add(key)
                works_per_key[key] += 1
    ranked = sorted(works_per_key.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [sorted(spellings[k].items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for k, _ in ranked]


def _span_text(begin: int | None, end: int | None) -> str | None:
    def year(y: int) -> str:
        return f"{-y} BC" if y < 0 else str(y)

    if begin is None and end is None:
        return None
    if begin is None or end is None or begin == end:
        return year(begin if begin is not None else end)
    return f"{year(begin)}–{year(end)}"


def _column(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype).alias(name)


def summarise_clusters(
    labels_df: pl.DataFrame,
    artworks: pl.DataFrame,
    top: int = 3,
    n_representatives: int = 3,
) -> pl.DataFrame:
    """One row per cluster (columns :data:`SUMMARY_SCHEMA`), sorted by cluster.

    ``labels_df`` is :func:`cluster_vectors`' output (``artwork_id``, ``cluster`` and
    ``distance``; without ``distance`` the representatives are the smallest ids);
    ``artworks`` the unified ``artworks`` table (missing columns count as empty).

    - ``size``: works in the cluster;
    - ``top_makers``, ``top_departments``, ``top_cultures``, ``top_classifications``,
      ``museums``: the ``top`` most common values, most common first (makers compared by
      their normalised name, anonymous ones ignored, counted once per work);
    - ``date_begin`` / ``date_end`` / ``date_span``: the 10th percentile of ``date_begin``
      and the 90th of ``date_end`` over the cluster (so one outlier does not stretch it),
      as years (negative = BC) and as text;
    - ``representative_ids`` / ``representative_titles``: the ``n_representatives`` works
      nearest the centroid (smallest ``distance``), nearest first.
    """
    if labels_df.height == 0:
        return pl.DataFrame(schema=SUMMARY_SCHEMA)
    meta = artworks.select(
        pl.col("artwork_id"),
        _column(artworks, "title", pl.String()),
        _column(artworks, "artists", pl.List(pl.String())),
        _column(artworks, "department", pl.String()),
        _column(artworks, "culture", pl.String()),
        _column(artworks, "classification", pl.String()),
        _column(artworks, "source", pl.String()),
        _column(artworks, "date_begin", pl.Int32()).cast(pl.Int32),
        _column(artworks, "date_end", pl.Int32()).cast(pl.Int32),
    ).unique("artwork_id", keep="first")
    labels = labels_df.select(
        "artwork_id",
        pl.col("cluster").cast(pl.Int32),
        (pl.col("distance") if "distance" in labels_df.columns else pl.lit(0.0)).cast(pl.Float64).alias("distance"),
    )
    joined = labels.join(meta, on="artwork_id", how="left").with_columns(
        pl.col("source").fill_null(pl.col("artwork_id").str.split(":").list.first())
    )
    rows = []
    maker_keys: dict[str, str | None] = {}
    for (cluster,), part in joined.sort(["cluster", "distance", "artwork_id"]).group_by(
        "cluster", maintain_order=True
    ):
        begins = part["date_begin"].drop_nulls()
        ends = part["date_end"].drop_nulls()
        begin = int(math.floor(begins.quantile(0.1, "lower"))) if begins.len() else None
        end = int(math.ceil(ends.quantile(0.9, "higher"))) if ends.len() else None
        reps = part.head(n_representatives)
        rows.append(
            {
                "cluster": cluster,
                "size": part.height,
                "top_makers": _top_makers(part["artists"].to_list(), top, maker_keys),
                "top_departments": _top(part["department"].to_list(), top),
                "top_cultures": _top(part["culture"].to_list(), top),
                "top_classifications": _top(part["classification"].to_list(), top),
                "museums": _top(part["source"].to_list(), top),
                "date_begin": begin,
                "date_end": end,
                "date_span": _span_text(begin, end),
                "representative_ids": reps["artwork_id"].to_list(),
                "representative_titles": [t or "" for t in reps["title"].to_list()],
            }
        )
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA).sort("cluster")


# what summarise_clusters reads of an artwork besides its title
SUMMARY_FIELDS = ("artwork_id", "artists", "department", "culture", "classification", "source", "date_begin", "date_end")


def summary_inputs_key(labels_df: pl.DataFrame, artworks: pl.DataFrame, top: int = 3, n_representatives: int = 3) -> str:
    """A fingerprint of everything :func:`summarise_clusters` reads except titles: the labels,
    the other fields of :data:`SUMMARY_FIELDS`, the settings and the code (its own and what it
    calls, e.g. ``names.normalise_artist``). Equal keys: the summaries differ at most in
    ``representative_titles`` (see :func:`with_current_titles`)."""
    present = [c for c in SUMMARY_FIELDS if c in artworks.columns]
    label_columns = [c for c in ("artwork_id", "cluster", "distance") if c in labels_df.columns]
    return combined_fingerprint(frame_fingerprint(labels_df.select(label_columns)), frame_fingerprint(artworks.select(present)),
                                ",".join(present), ",".join(label_columns), f"{top}:{n_representatives}",
                                code_fingerprint(summarise_clusters, with_current_titles))


def with_current_titles(summary: pl.DataFrame, artworks: pl.DataFrame) -> pl.DataFrame:
    """``summary`` (of :func:`summarise_clusters`) with ``representative_titles`` read again from
    ``artworks``: what :func:`summarise_clusters` gives when nothing but titles changed."""
    wanted = {a for ids in summary["representative_ids"].to_list() for a in ids}
    titles = artworks.select("artwork_id", _column(artworks, "title", pl.String())).unique("artwork_id", keep="first")
    lookup = dict(titles.filter(pl.col("artwork_id").is_in(list(wanted))).iter_rows())
    fresh = [[lookup.get(a) or "" for a in ids] for ids in summary["representative_ids"].to_list()]
    return summary.with_columns(pl.Series("representative_titles", fresh, dtype=pl.List(pl.String())))


# -- incremental updates ----------------------------------------------------------------------------

MAX_DISTANCE_RATIO = 1.5  # new works this much farther from their centroid than at the fit: fit again
MIN_WORKS_FOR_DISTANCE_CHECK = 20  # fewer new works than this say too little about drift

STATE_SCHEMA: dict[str, pl.DataType] = {
    **LABELS_SCHEMA,
    "fingerprint": pl.String(),
    "incremental": pl.Boolean(),
}


@dataclass
class ClusterState:
    """What a clustering run stores for the next one: every work's label with the fingerprint
    of its vector and whether it was assigned incrementally (``labels``, :data:`STATE_SCHEMA`),
    the centroids, and ``info`` (the settings of the last fit, its mean distance to centroid)."""

    labels: pl.DataFrame
    centroids: np.ndarray
    info: dict[str, Any]


def _fit_state(ids: list[str], x: np.ndarray, prints: list[str], n_clusters: int | None, seed: int) -> ClusterState:
    labels, centroids = fit_clusters(ids, x, n_clusters=n_clusters, seed=seed)
    labels = labels.with_columns(pl.Series("fingerprint", prints, pl.String()), pl.lit(False).alias("incremental"))
    mean = float(labels["distance"].mean()) if labels.height else 0.0
    return ClusterState(labels, centroids, {"n_clusters": n_clusters, "seed": seed, "fit_mean_distance": mean,
                                            "fit_works": labels.height})


def update_clusters(
    ids: Sequence[str],
    vectors: Any,
    previous: ClusterState | None,
    *,
    n_clusters: int | None = None,
    seed: int = 0,
    force_full: bool = False,
    max_incremental_fraction: float = MAX_INCREMENTAL_FRACTION,
    max_distance_ratio: float = MAX_DISTANCE_RATIO,
) -> tuple[ClusterState, Plan]:
    """Cluster the works again only when needed (:func:`core.incremental.plan_update`).

    Incrementally, works whose vector is unchanged keep their cluster and distance, new or
    changed works join the nearest stored centroid, removed works are dropped (cluster numbers
    are kept, so a cluster may shrink below a later one). The fit is done again instead when
    asked, when ``n_clusters`` or ``seed`` changed, past the drift limit, or when at least
    :data:`MIN_WORKS_FOR_DISTANCE_CHECK` new works lie on average more than
    ``max_distance_ratio`` times farther from their centroid than the works of the last fit.
    """
    ids = [str(i) for i in ids]
    x = _normalised(vectors)
    if x.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {x.shape[0]} vectors")
    prints = fingerprints(x)
    stored = previous.labels if previous is not None else None
    settings_changed = previous is not None and (
        previous.info.get("n_clusters") != n_clusters or previous.info.get("seed") != seed)
    plan = plan_update(
        ids, prints,
        stored["artwork_id"].to_list() if stored is not None else None,
        stored["fingerprint"].to_list() if stored is not None else None,
        stored["incremental"].to_list() if stored is not None else None,
        settings_changed=settings_changed, force_full=force_full, max_incremental_fraction=max_incremental_fraction,
    )
    if plan.full:
        return _fit_state(ids, x, prints, n_clusters, seed), plan
    assert previous is not None and stored is not None
    new_labels, new_dist = assign_to_centroids(x[plan.fresh], previous.centroids)
    baseline = float(previous.info.get("fit_mean_distance") or 0.0)
    if len(plan.fresh) >= MIN_WORKS_FOR_DISTANCE_CHECK and baseline > 0:
        ratio = float(new_dist.mean()) / baseline
        if ratio > max_distance_ratio:
            reason = (f"drift: the {len(plan.fresh)} new works lie {ratio:.2f}x farther from their centroid than "
                      f"the fitted ones (limit {max_distance_ratio:.2f}x)")
            return _fit_state(ids, x, prints, n_clusters, seed), Plan(FULL, reason, removed=plan.removed)
    kept_rows = np.fromiter(plan.kept.keys(), dtype=np.int64, count=len(plan.kept))
    stored_rows = np.fromiter(plan.kept.values(), dtype=np.int64, count=len(plan.kept))
    cluster = np.empty(len(ids), np.int32)
    distance = np.empty(len(ids), np.float32)
    incremental = np.zeros(len(ids), bool)
    cluster[kept_rows] = stored["cluster"].to_numpy()[stored_rows]
    distance[kept_rows] = stored["distance"].to_numpy()[stored_rows]
    incremental[kept_rows] = stored["incremental"].to_numpy()[stored_rows]
    fresh = np.asarray(plan.fresh, dtype=np.int64)
    cluster[fresh], distance[fresh], incremental[fresh] = new_labels, new_dist, True
    labels = pl.DataFrame({"artwork_id": ids, "cluster": cluster, "distance": distance, "fingerprint": prints,
                           "incremental": incremental}, schema=STATE_SCHEMA)
    return ClusterState(labels, previous.centroids, dict(previous.info)), plan
