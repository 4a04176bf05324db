"""Full or incremental? The decision the map and the clusters share (no Dagster, no I/O).

A layout (map coordinates, cluster labels) is kept per work together with a fingerprint of the
vector it was computed from. On the next run, works whose fingerprint is unchanged keep what
they had; new or changed works are placed into the existing layout; removed works are dropped.
A full recomputation happens when asked, when nothing usable is stored, when the settings that
made the stored layout changed, or when too large a share of the works would be incrementally
placed since the last full run (the drift limit).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

FULL, INCREMENTAL = "full", "incremental"
MAX_INCREMENTAL_FRACTION = 0.2  # re-lay out once more than this share of works were placed incrementally


def fingerprints(matrix: np.ndarray) -> list[str]:
    """A short hex digest per row of the float32 form of ``matrix``: equal rows, equal digests."""
    rows = np.ascontiguousarray(np.asarray(matrix, dtype=np.float32))
    return [hashlib.blake2b(row.tobytes(), digest_size=8).hexdigest() for row in rows]


@dataclass(frozen=True)
class Plan:
    """What to do this run: ``mode`` (``"full"`` / ``"incremental"``), why, and, when
    incremental, which current rows keep their stored result (``kept``: current row ->
    stored row) and which are new or changed (``fresh``: current rows)."""

    mode: str
    reason: str
    kept: dict[int, int] = field(default_factory=dict)
    fresh: list[int] = field(default_factory=list)
    removed: int = 0
    incremental_fraction: float = 0.0

    @property
    def full(self) -> bool:
        return self.mode == FULL


def plan_update(
    ids: Sequence[str],
    prints: Sequence[str],
    stored_ids: Sequence[str] | None,
    stored_prints: Sequence[str] | None,
    stored_incremental: Sequence[bool] | None,
    *,
    settings_changed: bool = False,
    force_full: bool = False,
    max_incremental_fraction: float = MAX_INCREMENTAL_FRACTION,
) -> Plan:
    """Compare the current works (``ids``, their vector ``prints``) with the stored ones.

    ``stored_incremental[i]`` says whether stored work ``i`` was placed incrementally since the
    last full run. The drift measure is the share of current works that would then be
    incrementally placed (those stored so, plus the new and changed ones); above
    ``max_incremental_fraction`` the plan is a full run.
    """
    if len(ids) != len(prints):
        raise ValueError(f"{len(ids)} ids but {len(prints)} fingerprints")
    if not 0.0 <= max_incremental_fraction <= 1.0:
        raise ValueError("max_incremental_fraction must be in [0, 1]")
    if force_full:
        return Plan(FULL, "forced (config)")
    if stored_ids is None or len(stored_ids) == 0:
        return Plan(FULL, "no stored layout")
    if settings_changed:
        return Plan(FULL, "settings changed since the stored layout")
    stored_prints = list(stored_prints or [])
    stored_flags = list(stored_incremental) if stored_incremental is not None else [False] * len(stored_ids)
    if not (len(stored_ids) == len(stored_prints) == len(stored_flags)):
        raise ValueError("the stored ids, fingerprints and flags differ in length")
    position = {a: i for i, a in enumerate(stored_ids)}
    kept: dict[int, int] = {}
    fresh: list[int] = []
    for row, (artwork_id, digest) in enumerate(zip(ids, prints, strict=True)):
        j = position.get(artwork_id)
        if j is not None and stored_prints[j] == digest:
            kept[row] = j
        else:
            fresh.append(row)
    current = set(ids)
    removed = sum(1 for a in stored_ids if a not in current)
    n = len(ids)
    if n and not kept:
        return Plan(FULL, "no stored work is unchanged", removed=removed)
    drifted = len(fresh) + sum(1 for j in kept.values() if stored_flags[j])
    fraction = drifted / n if n else 0.0
    if fraction > max_incremental_fraction:
        return Plan(FULL, f"drift: {fraction:.1%} of works would be placed incrementally since the last full run "
                          f"(limit {max_incremental_fraction:.0%})", removed=removed, incremental_fraction=fraction)
    reason = f"{len(fresh)} new or changed, {removed} removed, {len(kept)} kept"
    return Plan(INCREMENTAL, reason, kept, fresh, removed, fraction)
