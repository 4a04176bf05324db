"""Hard and easy negatives: their definitions and the ratio."""

from __future__ import annotations

import polars as pl
import pytest

from artsim_pipeline.core.pairs import (
    PairRules,
    artwork_makers,
    mine_pairs,
    pair_stats,
    validate_pairs,
)
from artsim_pipeline.core.pairs.candidates import shares_maker
from artsim_pipeline.core.pairs.negatives import keep_quota, negative_slots, negative_targets
from artsim_pipeline.core.pairs.rules import RULE_CODE


def test_negative_definitions(real_pairs, real_artworks):
    info = real_artworks.select(
        "artwork_id", "department", "classification", "culture", "date_begin", "date_end"
    )
    makers = artwork_makers(real_artworks).group_by("artwork_id").agg(pl.col("maker"))
    info = info.join(makers, on="artwork_id", how="left")
    neg = (
        real_pairs.filter(pl.col("label") == 0)
        .join(info, left_on="artwork_id_a", right_on="artwork_id")
        .join(info, left_on="artwork_id_b", right_on="artwork_id", suffix="_b")
    )
    assert neg.height > 0
    shared_maker = neg.select(
        pl.col("maker")
        .fill_null([])
        .list.set_intersection(pl.col("maker_b").fill_null([]))
        .list.len()
        > 0
    ).to_series()
    assert not shared_maker.any()
    easy = neg.filter(pl.col("rule") == "easy_negative")
    hard = neg.filter(pl.col("rule") == "hard_negative")
    assert easy.height and hard.height
    assert (easy.get_column("department") != easy.get_column("department_b")).all()
    gap = PairRules().easy_negative_min_year_gap
    far = (pl.col("date_begin") - pl.col("date_end_b") >= gap) | (
        pl.col("date_begin_b") - pl.col("date_end") >= gap
    )
    assert easy.select(far.all()).item()
    same_group = (pl.col("department") == pl.col("department_b")) | (
        pl.col("classification").str.to_lowercase() == pl.col("classification_b").str.to_lowercase()
    )
    assert hard.select(same_group.all()).item()
    same_culture = (
        pl.col("culture").str.to_lowercase() == pl.col("culture_b").str.to_lowercase()
    ).fill_null(False)
    assert not hard.select(same_culture.any()).item()


@pytest.mark.parametrize("ratio, hard", [(1.0, 0.5), (0.5, 0.25), (2.0, 0.8)])
def test_negative_ratio(real_artworks, ratio, hard):
    rules = PairRules(negatives_per_positive=ratio, hard_fraction=hard)
    pairs = mine_pairs(real_artworks, rules)
    stats = pair_stats(pairs)
    assert stats["negatives_per_positive"] == pytest.approx(ratio, rel=0.02)
    for split in ("train", "val", "test"):
        assert stats["splits"][split]["negatives_per_positive"] == pytest.approx(ratio, rel=0.05)
    hard_share = stats["by_rule"]["hard_negative"] / stats["negatives"]
    assert hard_share == pytest.approx(hard, abs=0.05)
    assert dict((c[0], c[1]) for c in validate_pairs(pairs, real_artworks, rules))[
        "ratio_within_bounds"
    ]


def positive_ends(split_codes: list[int]) -> pl.DataFrame:
    """One positive (2i, 2i + 1) per split code."""
    n = len(split_codes)
    return pl.DataFrame(
        {
            "left_id": [2 * i for i in range(n)],
            "right_id": [2 * i + 1 for i in range(n)],
            "split_code": split_codes,
        },
        schema={"left_id": pl.UInt32, "right_id": pl.UInt32, "split_code": pl.UInt8},
    )


def test_negative_targets_and_slots():
    ends = positive_ends([0, 0, 0, 0, 1, 1])
    targets = negative_targets(ends, ratio=2.0, hard_share=0.25).sort("split_code")
    assert targets.select(
        "split_code", "positive_count", "target", "target_hard", "target_easy"
    ).rows() == [(0, 4, 8, 2, 6), (1, 2, 4, 1, 3)]
    slots = negative_slots(ends, slots_per_positive=3, seed=0)
    assert slots.height == 18 and slots.get_column("slot").sort().to_list() == list(range(18))
    # each slot offers both ends of its positive, in one order or the other
    ends_of = {(2 * i, 2 * i + 1) for i in range(6)}
    offered = slots.select(
        pl.min_horizontal("preferred_end", "other_end").alias("lower"),
        pl.max_horizontal("preferred_end", "other_end").alias("upper"),
    ).rows()
    assert set(offered) == ends_of
    assert 0 < slots.get_column("preferred_end").is_in([0, 2, 4, 6, 8, 10]).sum() < 18
    # the draw order is the hash order
    assert slots.sort("slot_hash").get_column("draw").is_sorted()
    assert slots.get_column("draw").is_between(0.0, 1.0, closed="left").all()
    # another seed hands the slots out in another order
    other = negative_slots(ends, slots_per_positive=3, seed=1)
    assert other.sort("slot").get_column("draw").to_list() != slots.sort("slot").get_column(
        "draw"
    ).to_list()


def test_quota_makes_up_a_shortfall_with_the_other_kind():
    hard, easy = RULE_CODE["hard_negative"], RULE_CODE["easy_negative"]

    def candidates(split_code: int, rule_code: int, count: int, first: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "left_id": range(first, first + count),
                "right_id": range(first + 1000, first + 1000 + count),
                "slot_hash": range(count),
                "split_code": [split_code] * count,
                "rule_code": [rule_code] * count,
            },
            schema={
                "left_id": pl.UInt32,
                "right_id": pl.UInt32,
                "slot_hash": pl.UInt64,
                "split_code": pl.UInt8,
                "rule_code": pl.UInt8,
            },
        )

    targets = pl.DataFrame(
        {"split_code": [0, 1], "target": [4, 3], "target_hard": [2, 1], "target_easy": [2, 2]},
        schema={"split_code": pl.UInt8, "target": pl.Int64, "target_hard": pl.Int64,
                "target_easy": pl.Int64},
    )
    found = [
        candidates(0, hard, 1, 0),  # split 0: one hard found for two wanted
        candidates(0, easy, 10, 100),
        candidates(1, hard, 5, 200),  # split 1: no easy at all
    ]
    kept = keep_quota(found, targets, hard_weight=0.7, easy_weight=1.0)
    counts = dict(
        ((split, rule), n)
        for split, rule, n in kept.join(
            pl.concat(found).select("left_id", "split_code"), on="left_id"
        )
        .group_by("split_code", "rule_code")
        .len()
        .iter_rows()
    )
    assert counts == {(0, hard): 1, (0, easy): 3, (1, hard): 3}
    # the first candidates of each kind are kept (they come in seeded order)
    kept_easy = kept.filter(pl.col("rule_code") == easy).get_column("left_id")
    assert kept_easy.to_list() == [100, 101, 102]
    weights = dict(kept.select("rule_code", "weight").unique().iter_rows())
    assert weights == {hard: pytest.approx(0.7), easy: 1.0}


def test_shares_maker_only_within_a_component():
    works = pl.DataFrame(
        {"component": [0, 0, 2, None], "maker_ids": [[0, 1], [1], [2], []]},
        schema={"component": pl.UInt32, "maker_ids": pl.List(pl.UInt32)},
    )
    anchor = pl.Series([0, 0, 1, 2, 3], dtype=pl.UInt32)
    partner = pl.Series([1, 2, 0, 3, 3], dtype=pl.UInt32)
    assert shares_maker(works, anchor, partner).to_list() == [True, False, True, False, False]
