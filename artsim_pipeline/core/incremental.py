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
import polars as pl

FULL, INCREMENTAL = "full", "incremental"
MAX_INCREMENTAL_FRACTION = 0.2  # re-lay out once more than this share of works were placed incrementally


def fingerprints(matrix: np.ndarray) -> list[str]:
    """A short hex digest per row of the float32 form of ``matrix``: equal rows, equal digests."""
    rows = np.ascontiguousarray(np.asarray(matrix, dtype=np.float32))
    if rows.ndim != 2 or rows.shape[1] == 0:
        return [hashlib.blake2b(row.tobytes(), digest_size=8).hexdigest() for row in rows]
    data, step = memoryview(rows.tobytes()), rows.shape[1] * 4  # one copy, sliced per row
    return [hashlib.blake2b(data[i:i + step], digest_size=8).hexdigest() for i in range(0, len(data), step)]


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
    kept, fresh, kept_flagged = _match(ids, prints, stored_ids, stored_prints, stored_flags)
    removed = int((~pl.Series(list(stored_ids), dtype=pl.String).is_in(pl.Series(list(ids), dtype=pl.String))).sum())
    n = len(ids)
    if n and not kept:
        return Plan(FULL, "no stored work is unchanged", removed=removed)
    drifted = len(fresh) + kept_flagged
    fraction = drifted / n if n else 0.0
    if fraction > max_incremental_fraction:
        return Plan(FULL, f"drift: {fraction:.1%} of works would be placed incrementally since the last full run "
                          f"(limit {max_incremental_fraction:.0%})", removed=removed, incremental_fraction=fraction)
    reason = f"{len(fresh)} new or changed, {removed} removed, {len(kept)} kept"
    return Plan(INCREMENTAL, reason, kept, fresh, removed, fraction)


def _match(ids: Sequence[str], prints: Sequence[str], stored_ids: Sequence[str], stored_prints: Sequence[str],
           stored_flags: Sequence[bool]) -> tuple[dict[int, int], list[int], int]:
    """Which current rows keep a stored result (current row -> stored row: same id, same
    fingerprint; a stored id listed twice counts by its last row), which are new or changed,
    and how many of the kept were placed incrementally before. One join, not a loop per work."""
    current = pl.DataFrame({"artwork_id": list(ids), "fingerprint": list(prints)},
                           schema={"artwork_id": pl.String, "fingerprint": pl.String}).with_row_index("row")
    stored = (pl.DataFrame({"artwork_id": list(stored_ids), "stored_fingerprint": list(stored_prints),
                            "incremental": list(stored_flags)},
                           schema={"artwork_id": pl.String, "stored_fingerprint": pl.String, "incremental": pl.Boolean})
              .with_row_index("stored_row").unique("artwork_id", keep="last"))
    matched = current.join(stored, on="artwork_id", how="left").sort("row")
    same = (matched["fingerprint"] == matched["stored_fingerprint"]).fill_null(False)
    kept_rows = matched.filter(same)
    kept = dict(zip(kept_rows["row"].to_list(), kept_rows["stored_row"].to_list(), strict=True))
    fresh = matched.filter(~same)["row"].to_list()
    return kept, fresh, int(kept_rows["incremental"].fill_null(False).sum())
