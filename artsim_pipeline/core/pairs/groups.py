"""Group sampling: capped pairs inside rule groups, with no all-pairs join.

Every rule is a set of groups (a maker, a culture+classification, a tag, a department...).
Inside a group, members are put in a seeded pseudo-random order (a hash of the work; for
culture+classification, date order, so that neighbours overlap) and each member is paired with
the next ``K`` members, ``K = min(max_pairs_per_anchor // 2, max_pairs_per_group // size)``;
when even ``K = 1`` would exceed the group cap, only ``max_pairs_per_group`` randomly chosen
members anchor a pair.  A group of ``s`` works thus yields at most
``min(s * K, max_pairs_per_group)`` pairs, so the work is linear in the number of (work, group)
memberships.  Partners are found by position arithmetic and ``gather``, not by joins on the
group keys.
"""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.pairs.frames import WORK_INDEX
from artsim_pipeline.core.pairs.rules import PairRules


def layout(members: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    """Members (``group`` key, ``work_index``, the ``order`` columns) sorted by group then
    ``order``, with ``rank`` (rank in the group), ``group_size`` and ``group_start`` (row of
    the group's first member), computed from run lengths (no hashing)."""
    laid_out = members.sort(["group", *order, "work_index"])
    if laid_out.is_empty():
        return laid_out.with_columns(
            pl.lit(0, dtype=pl.Int64).alias("rank"),
            pl.lit(0, dtype=pl.Int64).alias("group_size"),
            pl.lit(0, dtype=pl.Int64).alias("group_start"),
        )
    group = laid_out.get_column("group")
    run = group.rle_id()
    run_lengths = group.rle().struct.field("len").cast(pl.Int64)
    run_starts = run_lengths.cum_sum() - run_lengths
    group_start = run_starts.gather(run)
    return laid_out.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) - group_start).alias("rank"),
        run_lengths.gather(run).alias("group_size"),
        group_start.alias("group_start"),
    )


def partners_per_anchor(rules: PairRules, reach: pl.Expr, anchors_in_group: pl.Expr) -> pl.Expr:
    """``K``: partners each anchor takes, at most half the anchor cap, at most ``reach`` and
    at most the group cap shared among ``anchors_in_group``; at least 1."""
    most = pl.lit(max(1, rules.max_pairs_per_anchor // 2), dtype=pl.Int64)
    group_cap = pl.lit(rules.max_pairs_per_group, dtype=pl.Int64)
    return pl.min_horizontal(most, reach, group_cap // anchors_in_group).clip(lower_bound=1)


def circular_pairs(
    laid_out: pl.DataFrame, rules: PairRules, *, wrap: bool = True, anchor_rank: str = "rank"
) -> pl.DataFrame:
    """Capped pairs ``(anchor_id, partner_id)`` inside the groups of a :func:`layout`: the
    member of rank ``r`` is paired with ranks ``r+1 .. r+K`` (mod size if ``wrap``); only
    members with ``anchor_rank < group cap // K`` anchor pairs, so no group yields more than
    ``max_pairs_per_group``.  Singleton groups yield only self-pairs, which the caller drops."""
    if laid_out.is_empty():
        return pl.DataFrame(schema={"anchor_id": WORK_INDEX, "partner_id": WORK_INDEX})
    group_cap = pl.lit(rules.max_pairs_per_group, dtype=pl.Int64)
    size = pl.col("group_size")
    reach = (size // 2) if wrap else (size - 1)
    placement = ["work_index", "rank", "group_size", "group_start"]
    anchors = (
        laid_out.select(
            *dict.fromkeys([*placement, anchor_rank]),
            partners_per_anchor(rules, reach, size).alias("partners"),
        )
        .filter((size >= 2) & (pl.col(anchor_rank) < group_cap // pl.col("partners")))
        .select(
            *placement,
            pl.int_ranges(1, pl.col("partners") + 1, dtype=pl.Int64).alias("step"),
        )
        .explode("step")
    )
    partner_rank = pl.col("rank") + pl.col("step")
    if wrap:
        partner_rank = partner_rank % size
    anchors = anchors.with_columns(partner_rank.alias("partner_rank")).filter(
        pl.col("partner_rank") < size
    )
    rows = (anchors.get_column("group_start") + anchors.get_column("partner_rank")).cast(WORK_INDEX)
    return pl.DataFrame(
        {
            "anchor_id": anchors.get_column("work_index"),
            "partner_id": laid_out.get_column("work_index").gather(rows),
        }
    )
