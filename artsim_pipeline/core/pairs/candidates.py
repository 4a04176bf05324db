"""Negative candidates: a partner for each negative slot, proposed and checked in rounds.

A slot (see :mod:`~artsim_pipeline.core.pairs.negatives`) names two works, the ends of a
positive pair; one of them becomes the ``anchor_id``.  Each attempt proposes a partner at a
seeded offset inside the anchor's department or classification group (hard), or in the far
half of its split in date order (easy); a proposal that fails the rule's definition is retried
up to ``negative_candidates`` times.

``hard_negative``
    same department or classification, no shared maker, not the same culture, and some
    evidence of a difference: both makers known, or both cultures known.
``easy_negative``
    different department and classification, no shared maker, dates at least
    ``easy_negative_min_year_gap`` years apart.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from artsim_pipeline.core.pairs.frames import WORK_INDEX, hash_seed
from artsim_pipeline.core.pairs.groups import layout
from artsim_pipeline.core.pairs.rules import RULE_CODE, PairRules

#: ``(works, slots, targets, rules, seed) -> found``: one kind of negative (hard or easy).
NegativeKind = Callable[[pl.DataFrame, pl.DataFrame, pl.DataFrame, PairRules, int], pl.DataFrame]

_FOUND_SCHEMA = {
    "slot": pl.UInt64,
    "slot_hash": pl.UInt64,
    "split_code": pl.UInt8,
    "anchor_id": WORK_INDEX,
    "partner_id": WORK_INDEX,
}


def shares_maker(works: pl.DataFrame, anchor: pl.Series, partner: pl.Series) -> pl.Series:
    """True where works ``anchor`` and ``partner`` share a maker.  Only pairs in one component
    of the work-maker graph can; only those go through the list intersection."""
    component = works.get_column("component")
    maybe = (component.gather(anchor) == component.gather(partner)).fill_null(False)
    shared = pl.Series(np.zeros(anchor.len(), dtype=bool))
    rows = maybe.arg_true()
    if rows.len():
        maker_ids = works.get_column("maker_ids")
        hit = (
            pl.DataFrame(
                {
                    "anchor_makers": maker_ids.gather(anchor.gather(rows)),
                    "partner_makers": maker_ids.gather(partner.gather(rows)),
                }
            )
            .select(pl.col("anchor_makers").list.set_intersection("partner_makers").list.len() > 0)
            .to_series()
        )
        shared = shared.scatter(rows, hit)
    return shared


def group_positions(
    works: pl.DataFrame, group: pl.Expr, salt: int, seed: int, order: list[pl.Expr] | None = None
) -> tuple[pl.DataFrame, pl.Series]:
    """Per-work ``(rank, group_size, group_start)`` (indexed by ``work_index``;
    ``group_size = 0`` for works outside every group) in a seeded layout of ``group``, and the
    layout's ``work_index`` column to gather partners from."""
    order = order or []
    order_columns = [e.meta.output_name() for e in order] + ["order_hash"]
    members = works.select(
        group.alias("group"),
        "work_index",
        *order,
        pl.col("work_hash").hash(hash_seed(seed, salt)).alias("order_hash"),
    ).drop_nulls(["group", *order_columns])
    laid_out = layout(members, order_columns)
    at = laid_out.get_column("work_index").to_numpy()
    arrays = {}
    for name in ("rank", "group_size", "group_start"):
        values = np.zeros(works.height, dtype=np.int64)
        values[at] = laid_out.get_column(name).to_numpy()
        arrays[name] = values
    return pl.DataFrame(arrays), laid_out.get_column("work_index")


def propose(
    pending: pl.DataFrame, positions: pl.DataFrame, order: pl.Series, offset: pl.Expr
) -> pl.DataFrame:
    """Partner = the member at ``(rank + offset) mod group_size`` of the anchor's group."""
    anchor = pending.get_column("anchor_id")
    proposed = pending.with_columns(
        positions.get_column("rank").gather(anchor).alias("rank"),
        positions.get_column("group_size").gather(anchor).alias("group_size"),
        positions.get_column("group_start").gather(anchor).alias("group_start"),
    ).filter(pl.col("group_size") >= 2)
    proposed = proposed.with_columns(
        ((pl.col("rank") + offset) % pl.col("group_size") + pl.col("group_start"))
        .cast(WORK_INDEX)
        .alias("row")
    )
    return proposed.with_columns(
        order.gather(proposed.get_column("row")).alias("partner_id")
    ).select(*_FOUND_SCHEMA)


def retry(
    slots: pl.DataFrame,
    targets: pl.DataFrame,
    attempts: int,
    propose_partners: Callable[[pl.DataFrame, int], pl.DataFrame],
    is_valid: Callable[[pl.DataFrame], pl.Series],
) -> pl.DataFrame:
    """Up to ``attempts`` rounds: propose one partner for every open slot, keep the valid
    ones, retry the rest; stop early for a split once it has 5 % spare."""
    pending = slots.select("slot", "slot_hash", "split_code", "anchor_id")
    found: list[pl.DataFrame] = []
    enough = targets.with_columns(
        (pl.col("target").cast(pl.Float64) * 1.05 + 8).ceil().cast(pl.Int64).alias("enough")
    )
    have = pl.DataFrame(
        {"split_code": pl.Series([], dtype=pl.UInt8), "valid_count": pl.Series([], dtype=pl.Int64)}
    )
    for attempt in range(attempts):
        if pending.is_empty():
            break
        proposed = propose_partners(pending, attempt)
        if proposed.height:
            valid = proposed.filter(is_valid(proposed))
            found.append(valid)
            pending = pending.join(
                valid.select("slot"), on="slot", how="anti", maintain_order="left"
            )
            have = (
                pl.concat(found)
                .group_by("split_code")
                .agg(pl.len().cast(pl.Int64).alias("valid_count"))
            )
        done = (
            enough.join(have, on="split_code", how="left")
            .filter(pl.col("valid_count").fill_null(0) >= pl.col("enough"))
            .get_column("split_code")
        )
        if done.len():
            pending = pending.filter(~pl.col("split_code").is_in(done.to_list()))
    if not found:
        return pl.DataFrame(schema=_FOUND_SCHEMA)
    return pl.concat(found)


def hard_negatives(
    works: pl.DataFrame, slots: pl.DataFrame, targets: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame:
    """Same department (even attempts) or classification (odd attempts) and split; no shared
    maker, not the same culture, and evidence of a difference: both makers known or both
    cultures known."""
    maker_count = works.get_column("maker_ids").list.len()
    culture = works.get_column("culture_code")
    informative = (maker_count > 0) | culture.is_not_null()
    slots = slots.with_columns(
        pl.when(informative.gather(slots.get_column("preferred_end")))
        .then("preferred_end")
        .otherwise("other_end")
        .alias("anchor_id")
    )
    layouts = [
        group_positions(
            works, pl.col(code).cast(pl.UInt64) * 3 + pl.col("split_code"), 30 + i, seed
        )
        for i, code in enumerate(("department_code", "classification_code"))
    ]
    attempts = rules.negative_candidates

    def propose_partners(pending: pl.DataFrame, attempt: int) -> pl.DataFrame:
        positions, order = layouts[attempt % 2]
        draw = (pl.col("slot") * attempts + attempt).hash(hash_seed(seed, 32))
        offset = 1 + (draw % (pl.col("group_size") - 1).cast(pl.UInt64)).cast(pl.Int64)
        return propose(pending, positions, order, offset)

    def is_valid(proposed: pl.DataFrame) -> pl.Series:
        anchor, partner = proposed.get_column("anchor_id"), proposed.get_column("partner_id")
        anchor_culture, partner_culture = culture.gather(anchor), culture.gather(partner)
        both_makers = (maker_count.gather(anchor) > 0) & (maker_count.gather(partner) > 0)
        both_cultures = anchor_culture.is_not_null() & partner_culture.is_not_null()
        same_culture = (anchor_culture == partner_culture).fill_null(False)
        return (
            (anchor != partner)
            & ~same_culture
            & (both_makers | both_cultures)
            & ~shares_maker(works, anchor, partner)
        )

    return retry(slots, targets, attempts, propose_partners, is_valid).with_columns(
        pl.lit(RULE_CODE["hard_negative"], dtype=pl.UInt8).alias("rule_code")
    )


def easy_negatives(
    works: pl.DataFrame, slots: pl.DataFrame, targets: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame:
    """Different department (and classification), no shared maker, dates far apart: the
    partner comes from the far half of the anchor's split in date order."""
    begin, end = works.get_column("year_begin"), works.get_column("year_end")
    department = works.get_column("department_code")
    classification = works.get_column("classification_code")
    slots = slots.with_columns(
        pl.when(begin.gather(slots.get_column("preferred_end")).is_not_null())
        .then("preferred_end")
        .otherwise("other_end")
        .alias("anchor_id")
    )
    positions, order = group_positions(
        works,
        pl.col("split_code").cast(pl.UInt64),
        40,
        seed,
        [((pl.col("year_begin") + pl.col("year_end")) / 2).alias("mid_year")],
    )
    attempts = rules.negative_candidates
    gap = rules.easy_negative_min_year_gap

    def propose_partners(pending: pl.DataFrame, attempt: int) -> pl.DataFrame:
        draw = (pl.col("slot") * attempts + attempt).hash(hash_seed(seed, 41))
        half = (pl.col("group_size") // 2).clip(lower_bound=1).cast(pl.UInt64)
        offset = pl.col("group_size") // 4 + (draw % half).cast(pl.Int64)
        return propose(pending, positions, order, offset)

    def is_valid(proposed: pl.DataFrame) -> pl.Series:
        anchor, partner = proposed.get_column("anchor_id"), proposed.get_column("partner_id")
        far = ((begin.gather(anchor) - end.gather(partner)) >= gap) | (
            (begin.gather(partner) - end.gather(anchor)) >= gap
        )
        other_department = (department.gather(anchor) != department.gather(partner)).fill_null(
            False
        )
        valid = far.fill_null(False) & other_department
        if rules.easy_negative_requires_different_classification:
            same_classification = classification.gather(anchor) == classification.gather(partner)
            valid = valid & ~same_classification.fill_null(False)
        return (anchor != partner) & valid & ~shares_maker(works, anchor, partner)

    return retry(slots, targets, attempts, propose_partners, is_valid).with_columns(
        pl.lit(RULE_CODE["easy_negative"], dtype=pl.UInt8).alias("rule_code")
    )
