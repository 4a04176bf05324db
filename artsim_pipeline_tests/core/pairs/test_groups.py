"""Group sampling and the candidate-pair frames the stages share."""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.pairs import PairRules
from artsim_pipeline.core.pairs.frames import canonical_pairs, strongest
from artsim_pipeline.core.pairs.groups import circular_pairs, layout
from artsim_pipeline.core.pairs.rules import RULE_CODE

MEMBERS_SCHEMA = {"group": pl.UInt64, "work_index": pl.UInt32, "order_hash": pl.UInt64}


def one_group(size: int) -> pl.DataFrame:
    """``size`` members of one group, in work-index order."""
    return pl.DataFrame(
        {"group": [1] * size, "work_index": range(size), "order_hash": range(size)},
        schema=MEMBERS_SCHEMA,
    )


def test_layout_ranks_members_inside_their_groups():
    members = pl.DataFrame(
        {"group": [7, 3, 7, 3, 7], "work_index": [4, 1, 0, 2, 3], "order_hash": [5, 9, 1, 2, 3]},
        schema=MEMBERS_SCHEMA,
    )
    laid_out = layout(members, ["order_hash"])
    assert laid_out.select("group", "work_index", "rank", "group_size", "group_start").rows() == [
        (3, 2, 0, 2, 0),
        (3, 1, 1, 2, 0),
        (7, 0, 0, 3, 2),
        (7, 3, 1, 3, 2),
        (7, 4, 2, 3, 2),
    ]
    assert layout(members.clear(), ["order_hash"]).is_empty()


def test_circular_pairs_take_the_next_members_within_both_caps():
    laid_out = layout(one_group(10), ["order_hash"])
    # K = min(anchor cap // 2, size // 2, group cap // size) = 2: ranks r+1 and r+2, wrapped
    pairs = circular_pairs(laid_out, PairRules(max_pairs_per_anchor=4))
    assert set(pairs.rows()) == {(r, (r + k) % 10) for r in range(10) for k in (1, 2)}
    assert pairs.height == 20
    # without wrapping, the last members have fewer partners ahead of them
    ahead = circular_pairs(laid_out, PairRules(max_pairs_per_anchor=4), wrap=False)
    assert set(ahead.rows()) == {(r, r + k) for r in range(10) for k in (1, 2) if r + k < 10}
    # a group cap below the group size: K = 1 and only the first 5 ranks anchor a pair
    capped = circular_pairs(laid_out, PairRules(max_pairs_per_anchor=4, max_pairs_per_group=5))
    assert set(capped.rows()) == {(r, r + 1) for r in range(5)}
    # a group of one yields nothing
    assert circular_pairs(layout(one_group(1), ["order_hash"]), PairRules()).is_empty()


def test_canonical_pairs_and_the_strongest_rule():
    sampled = pl.DataFrame(
        {"anchor_id": [5, 2, 3], "partner_id": [2, 5, 3]},
        schema={"anchor_id": pl.UInt32, "partner_id": pl.UInt32},
    )
    by_artist = canonical_pairs(sampled, "same_artist", 1.0)
    # ordered left < right, the self-pair dropped
    assert by_artist.rows() == [(2, 5, RULE_CODE["same_artist"], 1.0)] * 2
    by_tags = canonical_pairs(sampled.head(1), "shared_tags", 1.0)
    by_culture = canonical_pairs(sampled.head(1), "same_culture_classification", 0.6)
    # the highest weight wins; between equal weights, the rule listed first in RULES
    best = strongest(pl.concat([by_tags, by_culture, by_artist]))
    assert best.select("left_id", "right_id", "rule_code").rows() == [
        (2, 5, RULE_CODE["same_artist"])
    ]
    weak_tags = by_tags.with_columns(pl.lit(0.2, pl.Float32).alias("weight"))
    best = strongest(pl.concat([by_culture, weak_tags]))
    assert best.get_column("rule_code").to_list() == [RULE_CODE["same_culture_classification"]]
