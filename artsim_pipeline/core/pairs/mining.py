"""The miner: :func:`mine_pairs` runs the stages and writes the ``weak_pairs`` table."""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.pairs.frames import CANDIDATE_SCHEMA, pair_key, strongest
from artsim_pipeline.core.pairs.negatives import mine_negatives
from artsim_pipeline.core.pairs.positives import (
    cross_museum_artist,
    same_artist,
    same_culture_classification,
    shared_tags,
)
from artsim_pipeline.core.pairs.rules import (
    PAIRS_SCHEMA,
    POSITIVE_RULES,
    RULES,
    PairRules,
    empty_pairs,
)
from artsim_pipeline.core.pairs.splits import assign_splits
from artsim_pipeline.core.pairs.works import encode_fields, prepare_works


def _positives(
    works: pl.DataFrame, makers: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame | None:
    """The strongest positive of every pair any enabled rule finds (sorted by pair), or None."""
    found = []
    if rules.same_artist_weight > 0:
        found.append(same_artist(works, makers, rules, seed))
    if rules.cross_museum_artist_weight > 0:
        found.append(cross_museum_artist(works, makers, rules, seed))
    if rules.same_culture_classification_weight > 0:
        found.append(same_culture_classification(works, rules, seed))
    if rules.shared_tags_weight > 0:
        found.append(shared_tags(works, rules, seed))
    found = [frame.select(*CANDIDATE_SCHEMA) for frame in found if frame.height]
    if not found:
        return None
    return strongest(pl.concat(found)).drop("pair_key")


def mine_pairs(
    artworks: pl.DataFrame, rules: PairRules = PairRules(), seed: int = 0
) -> pl.DataFrame:
    """Mine weak-label pairs from ``artworks`` (the unified schema).

    Returns :data:`PAIRS_SCHEMA`: one row per unordered pair, ``artwork_id_a < artwork_id_b``,
    sorted by the two ids.  Deterministic in (content of ``artworks``, ``rules``, ``seed``),
    whatever the row order of ``artworks``.
    """
    if artworks.is_empty():
        return empty_pairs()
    works, makers = prepare_works(artworks, seed)
    works = encode_fields(assign_splits(works, makers, rules))
    positives = _positives(works, makers, rules, seed)
    if positives is None:
        return empty_pairs()
    negatives = mine_negatives(works, positives, rules, seed)
    pairs = pl.concat([positives, negatives]).with_columns(pair_key()).sort("pair_key")
    del positives, negatives

    left, right = pairs.get_column("left_id"), pairs.get_column("right_id")
    rule_code = pairs.get_column("rule_code")
    artwork_ids = works.get_column("artwork_id")
    return pl.DataFrame(
        {
            "artwork_id_a": artwork_ids.gather(left),
            "artwork_id_b": artwork_ids.gather(right),
            "label": (rule_code < len(POSITIVE_RULES)).cast(pl.Int8),
            "rule": pl.Series(RULES, dtype=pl.String).gather(rule_code),
            "weight": pairs.get_column("weight"),
            "split": works.get_column("split").gather(left),
        },
        schema=PAIRS_SCHEMA,
    )
