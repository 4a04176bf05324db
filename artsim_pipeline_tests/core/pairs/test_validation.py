"""validate_pairs on broken tables."""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.pairs import (
    PAIRS_SCHEMA,
    PairRules,
    artwork_makers,
    validate_pairs,
)
from artsim_pipeline_tests.core.pairs.builders import works


def test_validation_catches_a_broken_pair_table(real_pairs, real_artworks):
    good = real_pairs.filter(pl.col("split") == "train").head(200)
    train_id = good.row(0, named=True)["artwork_id_a"]
    test_row = real_pairs.filter(pl.col("split") == "test").row(0, named=True)
    makers = artwork_makers(real_artworks)
    van_gogh = makers.filter(pl.col("maker") == "vincent van gogh").get_column("artwork_id").sort()
    assert van_gogh.len() >= 2
    broken = pl.concat(
        [
            good,
            pl.DataFrame(
                [
                    ("met:436535", "met:436535", 1, "same_artist", 1.0, "train"),  # self-pair
                    (
                        good.row(1)[1],
                        good.row(1)[0],
                        0,
                        "easy_negative",
                        1.0,
                        "train",
                    ),  # duplicate, reversed
                    ("met:999999999", train_id, 1, "same_artist", 1.0, "train"),  # unknown id
                    (
                        train_id,
                        test_row["artwork_id_b"],
                        1,
                        "shared_tags",
                        0.2,
                        "test",
                    ),  # artwork in two splits
                    ("met:1", "met:2", 3, "no_such_rule", -1.0, "holdout"),  # bad values
                    # one maker in two splits
                    (van_gogh[0], "met:999999990", 0, "easy_negative", 1.0, "val"),
                    (van_gogh[1], "met:999999991", 0, "easy_negative", 1.0, "test"),
                ],
                schema=PAIRS_SCHEMA,
                orient="row",
            ),
        ]
    )
    results = {
        name: (ok, details)
        for name, ok, details in validate_pairs(broken, real_artworks, PairRules())
    }
    for name in (
        "no_self_pairs",
        "canonical_order",
        "no_duplicate_pairs",
        "valid_values",
        "ends_exist",
        "split_disjoint_artworks",
        "split_disjoint_makers",
        "ratio_within_bounds",
    ):
        assert results[name][0] is False, name
    assert "both positive and negative" in results["no_duplicate_pairs"][1]
    # the mined table itself passes everything
    clean = {name: ok for name, ok, _ in validate_pairs(real_pairs, real_artworks, PairRules())}
    assert all(clean.values())


def test_validation_flags_a_maker_in_two_splits():
    frame = works(
        [
            {"artwork_id": "met:1", "artists": ["Claude Monet"]},
            {"artwork_id": "met:2", "artists": ["Monet, Claude"]},
            {"artwork_id": "met:3", "artists": ["Edgar Degas"]},
            {"artwork_id": "met:4", "artists": ["Edgar Degas"]},
        ]
    )
    pairs = pl.DataFrame(
        [
            ("met:1", "met:3", 0, "hard_negative", 0.7, "train"),
            ("met:2", "met:4", 0, "hard_negative", 0.7, "test"),
        ],
        schema=PAIRS_SCHEMA,
        orient="row",
    )
    results = {name: ok for name, ok, _ in validate_pairs(pairs, frame, PairRules())}
    assert results["split_disjoint_artworks"] is True
    assert results["split_disjoint_makers"] is False
