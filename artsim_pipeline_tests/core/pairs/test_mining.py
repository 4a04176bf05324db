"""mine_pairs as a whole: the weak_pairs contract, tiny inputs, the strongest rule winning,
determinism."""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.pairs import (
    NEGATIVE_RULES,
    PAIRS_SCHEMA,
    POSITIVE_RULES,
    PairRules,
    mine_pairs,
    validate_pairs,
)
from artsim_pipeline_tests.core.pairs.builders import ONLY_SPLIT, works


def test_output_contract(real_pairs, real_artworks):
    assert dict(real_pairs.schema) == PAIRS_SCHEMA
    assert real_pairs.height > 1000
    assert real_pairs.filter(pl.col("artwork_id_a") >= pl.col("artwork_id_b")).is_empty()
    assert (
        real_pairs.select(pl.struct("artwork_id_a", "artwork_id_b").is_duplicated().any()).item()
        is False
    )
    assert set(real_pairs.get_column("rule").unique()) == set(POSITIVE_RULES) | set(NEGATIVE_RULES)
    assert set(real_pairs.get_column("split").unique()) == {"train", "val", "test"}
    pos_rules = real_pairs.filter(pl.col("label") == 1).get_column("rule").unique().to_list()
    assert set(pos_rules) <= set(POSITIVE_RULES)
    assert real_pairs.get_column("weight").min() > 0
    assert real_pairs.get_column("weight").max() <= 1.0
    checks = validate_pairs(real_pairs, real_artworks, PairRules())
    assert [c for c in checks if not c[1]] == []
    assert {c[0] for c in checks} >= {
        "no_self_pairs",
        "no_duplicate_pairs",
        "ends_exist",
        "split_disjoint_artworks",
        "split_disjoint_makers",
        "ratio_within_bounds",
    }


def test_empty_and_tiny_inputs():
    empty = mine_pairs(works([]))
    assert empty.is_empty() and dict(empty.schema) == PAIRS_SCHEMA
    single = mine_pairs(works([{"artwork_id": "met:1", "artists": ["Claude Monet"]}]))
    assert single.is_empty() and dict(single.schema) == PAIRS_SCHEMA


def test_strongest_rule_wins_and_no_pair_is_both():
    frame = works(
        [
            {
                "artwork_id": "met:1",
                "artists": ["Claude Monet"],
                "culture": "French",
                "classification": "Paintings",
                "date_begin": 1880,
                "date_end": 1881,
            },
            {
                "artwork_id": "met:2",
                "artists": ["Monet, Claude"],
                "culture": "French",
                "classification": "Paintings",
                "date_begin": 1880,
                "date_end": 1881,
            },
        ]
    )
    pairs = mine_pairs(frame, PairRules(**ONLY_SPLIT))
    assert pairs.select("artwork_id_a", "artwork_id_b", "rule", "label").rows() == [
        ("met:1", "met:2", "same_artist", 1)
    ]
    weaker_artist = mine_pairs(frame, PairRules(same_artist_weight=0.3, **ONLY_SPLIT))
    assert weaker_artist.get_column("rule").to_list() == ["same_culture_classification"]


def test_deterministic_and_row_order_independent(real_artworks, real_pairs):
    shuffled = real_artworks.sample(fraction=1.0, shuffle=True, seed=123)
    assert mine_pairs(shuffled).equals(real_pairs)
    assert mine_pairs(real_artworks.reverse()).equals(real_pairs)


def test_seed_changes_sampling_not_splits(real_artworks, real_pairs):
    other = mine_pairs(real_artworks, seed=7)
    assert not other.equals(real_pairs)
    split_of = lambda p: dict(  # noqa: E731
        pl.concat(
            [
                p.select(pl.col("artwork_id_a").alias("id"), "split"),
                p.select(pl.col("artwork_id_b").alias("id"), "split"),
            ]
        )
        .unique()
        .iter_rows()
    )
    first, second = split_of(real_pairs), split_of(other)
    common = first.keys() & second.keys()
    assert len(common) > 1000
    assert all(first[k] == second[k] for k in common)


def test_every_public_name_is_importable_from_the_package():
    import artsim_pipeline.core.pairs as pairs

    # what the asset, the curator feedback, the benchmark and the tests import
    used = {"PairRules", "mine_pairs", "pair_stats", "preview_pairs", "validate_pairs"}
    used |= {"PAIRS_SCHEMA", "POSITIVE_RULES", "NEGATIVE_RULES", "RULES", "SPLITS"}
    used |= {"artwork_makers", "empty_pairs"}
    assert used <= set(pairs.__all__)
    for name in pairs.__all__:
        assert getattr(pairs, name) is not None, name
    assert dict(pairs.empty_pairs().schema) == pairs.PAIRS_SCHEMA
