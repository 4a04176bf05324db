"""Negatives: ``negatives_per_positive`` per positive in every split, ``hard_fraction`` of them
hard, drawn for the anchors of the positives.

Slots: each positive offers ``slots_per_positive`` anchors (its ends, alternately), each with a
seeded uniform ``draw``.  Slots are handed out in draw order, per split: first to the hard pass,
then to the easy pass (sized for the easy target plus the hard pass's shortfall).  A pass that
falls short takes further slots, sized by the yield it has seen, up to 4 rounds.  Each slot
then gets a partner from :mod:`~artsim_pipeline.core.pairs.candidates`.  A shortfall of hard
negatives (small splits, makerless departments) is made up with easy ones, and the other way
round, so that the ratio holds.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from artsim_pipeline.core.pairs.candidates import NegativeKind, easy_negatives, hard_negatives
from artsim_pipeline.core.pairs.frames import empty_candidates, hash_seed, pair_key
from artsim_pipeline.core.pairs.rules import RULE_CODE, PairRules

#: Rounds of slots a pass takes at most.
_ROUNDS = 4


def negative_targets(positive_ends: pl.DataFrame, ratio: float, hard_share: float) -> pl.DataFrame:
    """Per ``split_code``: ``positive_count``, and the negatives wanted: ``target`` in all,
    ``target_hard`` and ``target_easy``."""
    return (
        positive_ends.group_by("split_code")
        .agg(pl.len().cast(pl.Int64).alias("positive_count"))
        .with_columns((pl.col("positive_count") * ratio).round().cast(pl.Int64).alias("target"))
        .with_columns(
            (pl.col("target").cast(pl.Float64) * hard_share)
            .round()
            .cast(pl.Int64)
            .alias("target_hard")
        )
        .with_columns((pl.col("target") - pl.col("target_hard")).alias("target_easy"))
    )


def negative_slots(positive_ends: pl.DataFrame, slots_per_positive: int, seed: int) -> pl.DataFrame:
    """``(slot, slot_hash, split_code, draw, preferred_end, other_end)``: ``slots_per_positive``
    slots per positive; ``draw`` in [0, 1) is monotone in ``slot_hash``; the anchor is the
    preferred end of the positive pair unless the kind of negative finds it uninformative."""
    flip = (pl.col("slot_hash") // 7) % 2 == 1
    slot_number = (
        pl.col("positive_row").cast(pl.UInt64) * slots_per_positive + pl.col("slot_in_positive")
    )
    return (
        positive_ends.with_row_index("positive_row")
        .with_columns(
            pl.int_ranges(0, slots_per_positive, dtype=pl.UInt64).alias("slot_in_positive")
        )
        .explode("slot_in_positive")
        .with_columns(slot_number.alias("slot"))
        .with_columns(pl.col("slot").hash(hash_seed(seed, 20)).alias("slot_hash"))
        .select(
            "slot",
            "slot_hash",
            "split_code",
            ((pl.col("slot_hash") // (1 << 11)).cast(pl.Float64) / float(1 << 53)).alias("draw"),
            pl.when(flip).then("right_id").otherwise("left_id").alias("preferred_end"),
            pl.when(flip).then("left_id").otherwise("right_id").alias("other_end"),
        )
    )


def _per_split(values: dict[int, float]) -> pl.Expr:
    """``values[split_code]`` for every row (0 where a split has no value)."""
    array = np.zeros(3)
    for code, value in values.items():
        array[code] = value
    return pl.lit(pl.Series(array)).gather(pl.col("split_code"))


class _SlotRounds:
    """Hands the slots out in draw order, round by round, to one kind of negative at a time;
    the easy pass continues where the hard pass stopped.

    Every accepted negative is new: not a positive, not found before (small splits revisit
    the same pairs), so the counts that drive further rounds are distinct pairs."""

    def __init__(
        self,
        slots: pl.DataFrame,
        targets: pl.DataFrame,
        slots_per_positive: int,
        positives: pl.DataFrame,
        *,
        works: pl.DataFrame,
        rules: PairRules,
        seed: int,
    ) -> None:
        self.slots = slots
        # rounds take draw ranges: slices of the draw order (a stable sort, so deterministic)
        self.by_draw = slots.select(pl.arg_sort_by("slot_hash", maintain_order=True)).to_series()
        self.sorted_draws = slots.get_column("draw").gather(self.by_draw)
        self.capacity = {
            row["split_code"]: float(row["positive_count"] * slots_per_positive)
            for row in targets.iter_rows(named=True)
        }
        self.next_draw = {code: 0.0 for code in self.capacity}
        self.accepted = positives.select(pair_key()).get_column("pair_key")
        self.works, self.rules, self.seed = works, rules, seed

    def take(
        self, find: NegativeKind, target: dict[int, int]
    ) -> tuple[list[pl.DataFrame], dict[int, int]]:
        """The negatives ``find`` accepts, round by round, until each split has its
        ``target`` or its slots are spent; and the count found per split."""
        found: list[pl.DataFrame] = []
        got = {code: 0 for code in target}
        used = {code: 0 for code in target}
        for _ in range(_ROUNDS):
            short = {
                code: target[code] - got[code]
                for code in target
                if target[code] > got[code] and self.next_draw[code] < 1.0
            }
            if not short:
                break
            chosen = self._next_slots(short, got, used)
            if chosen.is_empty():
                break
            for code, n in chosen.group_by("split_code").len().iter_rows():
                used[code] += n
            accepted = self._accept(find, chosen, short)
            found.append(accepted)
            for code, n in accepted.group_by("split_code").len().iter_rows():
                got[code] += n
        return found, got

    def _next_slots(
        self, short: dict[int, int], got: dict[int, int], used: dict[int, int]
    ) -> pl.DataFrame:
        """The next slots of the splits that are ``short``, sized by the yield seen so far, in
        draw order (so rounds list slots in a seeded order)."""
        low = dict(self.next_draw)
        for code, missing in short.items():
            rate = max(0.05, got[code] / used[code]) if used[code] else 1.0
            self.next_draw[code] = min(
                1.0, self.next_draw[code] + (missing / rate * 1.15 + 16) / self.capacity[code]
            )
        first = int(self.sorted_draws.search_sorted(min(low[c] for c in short), side="left"))
        last = int(
            self.sorted_draws.search_sorted(max(self.next_draw[c] for c in short), side="left")
        )
        rows = self.by_draw.slice(first, last - first)
        return self.slots.select(pl.all().gather(rows)).filter(
            pl.col("split_code").is_in(list(short))
            & (pl.col("draw") >= _per_split(low))
            & (pl.col("draw") < _per_split(self.next_draw))
        )

    def _accept(
        self, find: NegativeKind, chosen: pl.DataFrame, short: dict[int, int]
    ) -> pl.DataFrame:
        """The new negatives ``find`` gives the ``chosen`` slots, as ordered pairs."""
        wanted = pl.DataFrame(
            {"split_code": list(short), "target": list(short.values())},
            schema={"split_code": pl.UInt8, "target": pl.Int64},
        )
        accepted = (
            find(self.works, chosen, wanted, self.rules, self.seed)
            .select(
                pl.min_horizontal("anchor_id", "partner_id").alias("left_id"),
                pl.max_horizontal("anchor_id", "partner_id").alias("right_id"),
                "slot_hash",
                "split_code",
                "rule_code",
            )
            .with_columns(pair_key())
            .filter(pl.col("pair_key").is_first_distinct())  # rows come in a deterministic order
            .filter(~pl.col("pair_key").is_in(self.accepted.implode()))
        )
        self.accepted = pl.concat([self.accepted, accepted.get_column("pair_key")])
        return accepted


def keep_quota(
    found: list[pl.DataFrame], targets: pl.DataFrame, hard_weight: float, easy_weight: float
) -> pl.DataFrame:
    """Per split: ``target_hard`` hard and ``target_easy`` easy negatives; a shortfall of one
    kind is made up with the other where it has spare candidates, so the ratio holds."""
    hard_code = RULE_CODE["hard_negative"]
    is_hard = pl.col("rule_code") == hard_code
    # candidates are listed round by round, each round in seeded (draw) order: truncating by
    # position keeps a random subset and drops the spare of the last rounds first
    candidates = pl.concat(found).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64)
        .over("split_code", "rule_code")
        .alias("candidate_rank")
    )
    available = candidates.group_by("split_code").agg(
        is_hard.sum().cast(pl.Int64).alias("available_hard"),
        (~is_hard).sum().cast(pl.Int64).alias("available_easy"),
    )
    quota = (
        targets.join(available, on="split_code")
        .with_columns(pl.min_horizontal("available_hard", "target_hard").alias("quota_hard"))
        .with_columns(
            pl.min_horizontal("available_easy", pl.col("target") - pl.col("quota_hard")).alias(
                "quota_easy"
            )
        )
        .with_columns(
            pl.min_horizontal("available_hard", pl.col("target") - pl.col("quota_easy")).alias(
                "quota_hard"
            )
        )
        .select("split_code", "quota_hard", "quota_easy")
    )
    candidates = candidates.join(quota, on="split_code").filter(
        pl.when(is_hard)
        .then(pl.col("candidate_rank") < pl.col("quota_hard"))
        .otherwise(pl.col("candidate_rank") < pl.col("quota_easy"))
    )
    weight = pl.when(is_hard).then(pl.lit(hard_weight)).otherwise(pl.lit(easy_weight))
    return candidates.select(
        "left_id", "right_id", "rule_code", weight.cast(pl.Float32).alias("weight")
    )


def mine_negatives(
    works: pl.DataFrame, positives: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame:
    """Hard and easy negatives for ``positives`` (candidate pairs sorted by pair), none of them
    a positive, in the ratio and hard share the ``rules`` ask for."""
    ratio = rules.negatives_per_positive
    hard_weight, easy_weight = rules.hard_negative_weight, rules.easy_negative_weight
    if positives.is_empty() or ratio <= 0 or (hard_weight <= 0 and easy_weight <= 0):
        return empty_candidates()
    hard_share = rules.hard_fraction if hard_weight > 0 else 0.0
    if easy_weight <= 0:
        hard_share = 1.0
    # positives arrive sorted by pair from strongest(), which fixes the slot numbering
    positive_ends = positives.select("left_id", "right_id").with_columns(
        works.get_column("split_code").gather(positives.get_column("left_id")).alias("split_code")
    )
    targets = negative_targets(positive_ends, ratio, hard_share)
    slots_per_positive = max(2, math.ceil(ratio * 2))
    slots = negative_slots(positive_ends, slots_per_positive, seed)
    rounds = _SlotRounds(
        slots, targets, slots_per_positive, positives, works=works, rules=rules, seed=seed
    )
    per_split = {row["split_code"]: row for row in targets.iter_rows(named=True)}

    found: list[pl.DataFrame] = []
    hard_found: dict[int, int] = {}
    if hard_share > 0:
        hard, hard_found = rounds.take(
            hard_negatives, {code: row["target_hard"] for code, row in per_split.items()}
        )
        found += hard
    if easy_weight > 0:
        easy_target = {
            code: row["target"] - min(hard_found.get(code, 0), row["target_hard"])
            for code, row in per_split.items()
        }
        easy, _ = rounds.take(easy_negatives, easy_target)
        found += easy
    found = [frame for frame in found if frame.height]
    if not found:
        return empty_candidates()
    return keep_quota(found, targets, hard_weight, easy_weight)
