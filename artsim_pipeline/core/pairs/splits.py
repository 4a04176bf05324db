"""Leakage-free splits: every work gets ``split`` (train / val / test) by its maker group.

Works are grouped into connected components of the work-maker graph (two works sharing any
maker are in one component); each component is keyed by its smallest maker key, works without
a maker by ``culture|classification`` (or their own id), and the key is hashed with
``split_seed`` into train / val / test by the configured fractions.  Every rule samples inside
one split, so no pair crosses splits and no maker appears in two splits.  The split does not
depend on the sampling ``seed``: re-mining with another seed never moves a maker from test to
train.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from artsim_pipeline.core.pairs.frames import WORK_INDEX, hash_seed, uniform
from artsim_pipeline.core.pairs.rules import SPLIT_CODE, PairRules


def components(n_works: int, makers: pl.DataFrame) -> np.ndarray:
    """Root (smallest work index) of each work's connected component in the work-maker graph.

    Vectorised union-find: hook the larger root of every edge onto the smaller one, then
    compress paths by pointer jumping; a few rounds suffice."""
    work_nodes = makers.get_column("work_index").to_numpy().astype(np.int64)
    maker_nodes = makers.get_column("maker_id").to_numpy().astype(np.int64) + n_works
    n_makers = int(maker_nodes.max()) - n_works + 1 if maker_nodes.size else 0
    parent = np.arange(n_works + n_makers, dtype=np.int64)
    while work_nodes.size:
        work_roots, maker_roots = parent[work_nodes], parent[maker_nodes]
        if np.array_equal(work_roots, maker_roots):
            break
        np.minimum.at(
            parent,
            np.maximum(work_roots, maker_roots),
            np.minimum(work_roots, maker_roots),
        )
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return parent[:n_works]


def assign_splits(works: pl.DataFrame, makers: pl.DataFrame, rules: PairRules) -> pl.DataFrame:
    """Adds ``component`` (component root, null without a maker), ``split_key``, ``split`` and
    ``split_code`` (0 train, 1 val, 2 test)."""
    root = pl.Series("component", components(works.height, makers), dtype=pl.Int64).cast(
        WORK_INDEX
    )
    has_maker = works.get_column("maker_ids").list.len() > 0
    works = works.with_columns(pl.when(has_maker).then(root).alias("component"))
    component_key = (
        makers.with_columns(
            works.get_column("component").gather(makers.get_column("work_index")).alias("component")
        )
        .group_by("component")
        .agg(pl.col("maker_key").min().alias("component_key"))
    )
    makerless_key = (
        pl.when(pl.col("culture").is_not_null() & pl.col("classification").is_not_null())
        .then(pl.concat_str(pl.lit("cc:"), "culture", pl.lit("|"), "classification"))
        .otherwise(pl.concat_str(pl.lit("id:"), "artwork_id"))
    )
    works = (
        works.join(component_key, on="component", how="left")
        .sort("work_index")
        .with_columns(
            pl.concat_str(pl.lit("maker:"), "component_key")
            .fill_null(makerless_key)
            .alias("split_key")
        )
        .drop("component_key")
    )
    draw = uniform(pl.col("split_key").hash(hash_seed(rules.split_seed, 2)))
    train_below = rules.train_fraction
    val_below = rules.train_fraction + rules.val_fraction
    split_of_code = {code: split for split, code in SPLIT_CODE.items()}
    return works.with_columns(
        pl.when(draw < train_below)
        .then(SPLIT_CODE["train"])
        .when(draw < val_below)
        .then(SPLIT_CODE["val"])
        .otherwise(SPLIT_CODE["test"])
        .cast(pl.UInt8)
        .alias("split_code")
    ).with_columns(
        pl.col("split_code").replace_strict(split_of_code, return_dtype=pl.String).alias("split")
    )
