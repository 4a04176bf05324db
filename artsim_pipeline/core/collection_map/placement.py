"""Incremental placement: new works join the existing map without laying it out again.

A work whose vector is unchanged keeps its coordinates exactly; a new or changed work is put at
the similarity-weighted mean position of its ``k`` nearest works that are already on the map
(found with the ANN index when the caller passes one, else exactly); removed works are dropped.
When to lay the whole map out again is :func:`artsim_pipeline.core.incremental.plan_update`'s
decision (asked for, settings changed, or past the drift limit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from artsim_pipeline.core.features import as_matrix
from artsim_pipeline.core.incremental import MAX_INCREMENTAL_FRACTION, Plan, fingerprints, plan_update
from artsim_pipeline.core.vectors import l2_normalise

PLACE_K = 10  # neighbours whose mean position a new work takes
LAYOUT_SCHEMA: dict[str, pl.DataType] = {
    "artwork_id": pl.String(),
    "x": pl.Float32(),
    "y": pl.Float32(),
    "fingerprint": pl.String(),
    "incremental": pl.Boolean(),
}

# (vectors of the works to place, how many neighbours) -> (artwork ids (m, kk) with None for
# padding, cosine similarities (m, kk)), best first: e.g. the ANN index's query
NeighbourSearch = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
# unit vectors -> ((n, 2) coordinates, method used): e.g. project_2d with the asset's settings
Projection = Callable[[np.ndarray], tuple[np.ndarray, str]]


@dataclass
class Layout:
    """A map's coordinates as stored for the next run (``points``: :data:`LAYOUT_SCHEMA`) and
    ``info``: the projection ``method`` and the ``settings`` of the last full layout."""

    points: pl.DataFrame
    info: dict[str, Any]


_SCORES_PER_BLOCK = 1 << 24  # 64 MiB of float32 scores per block of queries, whatever the map's size


def nearest_placed(query: np.ndarray, placed: np.ndarray, k: int, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k nearest rows of ``placed`` for each row of ``query`` (both unit rows):
    ``(indices int64 (m, k'), similarities float32 (m, k'))`` with ``k' = min(k, len(placed))``.
    Queries go in blocks sized so that a block's scores stay near 64 MiB."""
    k = min(k, placed.shape[0])
    batch = batch or max(1, _SCORES_PER_BLOCK // max(placed.shape[0], 1))
    m = query.shape[0]
    idx = np.zeros((m, k), np.int64)
    sims = np.zeros((m, k), np.float32)
    if k == 0:
        return idx, sims
    placed = np.asarray(placed, np.float32)
    for start in range(0, m, batch):
        s = np.asarray(query[start:start + batch], np.float32) @ placed.T
        s *= -1  # in place: no second block for the descending order
        part = np.argpartition(s, k - 1, axis=1)[:, :k]
        s *= -1
        part_sims = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        idx[start:start + batch] = np.take_along_axis(part, order, axis=1)
        sims[start:start + batch] = np.take_along_axis(part_sims, order, axis=1)
    return idx, sims


def place_by_neighbours(neighbour_xy: np.ndarray, similarities: np.ndarray) -> np.ndarray:
    """``(m, 2)`` positions: each row the mean of its neighbours' positions (``(m, k, 2)``),
    weighted by their similarity (negative ones count 0; when no weight is left, the plain
    mean). NaN similarities mark missing neighbours; a row without any is NaN."""
    xy = np.asarray(neighbour_xy, np.float64)
    sims = np.asarray(similarities, np.float64)
    valid = np.isfinite(sims) & np.isfinite(xy).all(axis=2)
    weights = np.where(valid, np.clip(np.nan_to_num(sims), 0.0, None), 0.0)
    plain = valid.astype(np.float64)
    weights = np.where(weights.sum(axis=1, keepdims=True) > 0, weights, plain)
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (np.nan_to_num(xy) * weights[:, :, None]).sum(axis=1) / total[:, None]
    out[total == 0] = np.nan
    return out.astype(np.float32)


def _neighbours_among_placed(
    x: np.ndarray, fresh: np.ndarray, placed_rows: np.ndarray, ids: list[str], search: NeighbourSearch | None, k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For each fresh row, the current rows of its k nearest placed works (-1: none) and their
    similarities (NaN: none): from ``search`` first, exactly for rows it leaves short."""
    rows = np.full((len(fresh), k), -1, np.int64)
    sims = np.full((len(fresh), k), np.nan, np.float32)
    row_of = {ids[r]: int(r) for r in placed_rows}
    short = np.ones(len(fresh), bool)
    if search is not None and len(fresh):
        found, scores = search(x[fresh], 3 * k)  # room for neighbours that are new themselves
        for i in range(len(fresh)):
            hits = [(row_of[a], s) for a, s in zip(found[i], scores[i]) if a is not None and a in row_of][:k]
            if len(hits) >= max(1, k // 2):
                rows[i, :len(hits)] = [h[0] for h in hits]
                sims[i, :len(hits)] = [h[1] for h in hits]
                short[i] = False
    if short.any():
        idx, exact = nearest_placed(x[fresh[short]], x[placed_rows], k)
        rows[short, :idx.shape[1]] = placed_rows[idx]
        sims[short, :idx.shape[1]] = exact
    return rows, sims


def update_layout(
    ids: Sequence[str],
    vectors: np.ndarray,
    previous: Layout | None,
    *,
    project: Projection,
    settings: dict[str, Any],
    search: NeighbourSearch | None = None,
    k: int = PLACE_K,
    force_full: bool = False,
    max_incremental_fraction: float = MAX_INCREMENTAL_FRACTION,
) -> tuple[Layout, Plan]:
    """The map's coordinates for ``ids`` (``vectors``, L2-normalised here), laid out in full with ``project``
    or placed incrementally into ``previous`` (see the module docstring), and the plan it followed.
    ``settings`` are what made the layout (compared with the stored ones)."""
    if k < 1:
        raise ValueError("k must be >= 1")
    ids = [str(a) for a in ids]
    x = l2_normalise(as_matrix(vectors), zero_rows="keep", dtype=np.float32)
    if x.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {x.shape[0]} vectors")
    prints = fingerprints(x)
    stored = previous.points if previous is not None else None
    plan = plan_update(
        ids, prints,
        stored["artwork_id"].to_list() if stored is not None else None,
        stored["fingerprint"].to_list() if stored is not None else None,
        stored["incremental"].to_list() if stored is not None else None,
        settings_changed=previous is not None and previous.info.get("settings") != settings,
        force_full=force_full, max_incremental_fraction=max_incremental_fraction,
    )
    if plan.full:
        coords, method = project(x)
        points = pl.DataFrame({"artwork_id": ids, "x": coords[:, 0], "y": coords[:, 1], "fingerprint": prints,
                               "incremental": np.zeros(len(ids), bool)}, schema=LAYOUT_SCHEMA)
        return Layout(points, {"method": method, "settings": dict(settings)}), plan
    assert previous is not None and stored is not None
    kept_rows = np.fromiter(plan.kept.keys(), np.int64, len(plan.kept))
    stored_rows = np.fromiter(plan.kept.values(), np.int64, len(plan.kept))
    fresh = np.asarray(plan.fresh, np.int64)
    xy = np.full((len(ids), 2), np.nan, np.float32)
    xy[kept_rows, 0] = stored["x"].to_numpy()[stored_rows]
    xy[kept_rows, 1] = stored["y"].to_numpy()[stored_rows]
    incremental = np.zeros(len(ids), bool)
    incremental[kept_rows] = stored["incremental"].to_numpy()[stored_rows]
    if len(fresh):
        rows, sims = _neighbours_among_placed(x, fresh, kept_rows, ids, search, k)
        neighbour_xy = np.where((rows >= 0)[:, :, None], xy[np.maximum(rows, 0)], np.nan)
        xy[fresh] = place_by_neighbours(neighbour_xy, sims)
        incremental[fresh] = True
    points = pl.DataFrame({"artwork_id": ids, "x": xy[:, 0], "y": xy[:, 1], "fingerprint": prints,
                           "incremental": incremental}, schema=LAYOUT_SCHEMA)
    return Layout(points, dict(previous.info)), plan
