"""Maker-disjoint splits near the configured fractions."""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.pairs import PairRules, artwork_makers, mine_pairs, pair_stats
from artsim_pipeline.core.pairs.splits import components
from artsim_pipeline_tests.core.pairs.builders import works


def test_splits_are_disjoint_by_maker_and_near_the_fractions(real_pairs, real_artworks):
    stats = pair_stats(real_pairs)
    for split, target in PairRules().split_fractions.items():
        assert abs(stats["artwork_split_fractions"][split] - target) < 0.06
    placed = pl.concat(
        [
            real_pairs.select(pl.col("artwork_id_a").alias("artwork_id"), "split"),
            real_pairs.select(pl.col("artwork_id_b").alias("artwork_id"), "split"),
        ]
    ).unique()
    by_maker = (
        placed.join(artwork_makers(real_artworks), on="artwork_id")
        .group_by("maker")
        .agg(pl.col("split").n_unique())
    )
    assert by_maker.get_column("split").max() == 1
    # test pairs are never train pairs, and no test artwork appears in train
    test_ids = set(placed.filter(pl.col("split") == "test").get_column("artwork_id"))
    train_ids = set(placed.filter(pl.col("split") == "train").get_column("artwork_id"))
    assert not test_ids & train_ids


def test_co_makers_share_a_split():
    # A and B share a work; B and C share a work: all of A, B, C's works are one component
    rows = [
        {"artwork_id": "met:1", "artists": ["Maker A"]},
        {"artwork_id": "met:2", "artists": ["Maker A", "Maker B"]},
        {"artwork_id": "met:3", "artists": ["Maker B", "Maker C"]},
        {"artwork_id": "met:4", "artists": ["Maker C"]},
    ] + [
        {"artwork_id": f"met:{i}", "artists": [f"Maker {i}"], "tags": ["T"]} for i in range(10, 200)
    ]
    for seed in range(5):
        pairs = mine_pairs(works(rows), PairRules(split_seed=seed, max_tag_df_fraction=1.0))
        chain = (
            pairs.filter(pl.col("artwork_id_a").is_in(["met:1", "met:2", "met:3", "met:4"]))
            .get_column("split")
            .unique()
        )
        assert chain.len() == 1


def test_components_join_works_through_shared_makers():
    # works 0-1 share maker 0 and 1-2 share maker 1; work 3 has its own maker; work 4 none
    makers = pl.DataFrame(
        {"work_index": [0, 1, 1, 2, 3], "maker_id": [0, 0, 1, 1, 2]},
        schema={"work_index": pl.UInt32, "maker_id": pl.UInt32},
    )
    assert components(5, makers).tolist() == [0, 0, 0, 3, 4]
    # a long chain listed backwards still ends in one component (several union-find rounds)
    n = 60
    chain = pl.DataFrame(
        {
            "work_index": [w for i in reversed(range(n - 1)) for w in (i, i + 1)],
            "maker_id": [i for i in reversed(range(n - 1)) for _ in (0, 1)],
        },
        schema={"work_index": pl.UInt32, "maker_id": pl.UInt32},
    )
    assert components(n, chain).tolist() == [0] * n
