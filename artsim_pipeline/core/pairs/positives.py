"""The positive rules, each a set of groups sampled with :mod:`~artsim_pipeline.core.pairs.groups`.

``same_artist``
    both works share a maker after :func:`~artsim_pipeline.core.names.normalise_artist`
    (anonymous / unknown makers never match).
``cross_museum_artist``
    the same, but the two works come from different sources (Met and SMK); sampled
    separately so that a maker with 10,000 Met works and 3 SMK works still yields
    cross-museum pairs.
``same_culture_classification``
    same culture and classification and overlapping date ranges.
``shared_tags``
    a shared subject tag; the weight grows with the rarity of the shared tags
    (``sum(ln(N/df)) / ln(N)``, capped at 1), and tags held by more than
    ``max_tag_df_fraction`` of the works are ignored.

Each returns candidate pairs (:data:`~artsim_pipeline.core.pairs.frames.CANDIDATE_SCHEMA`).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from artsim_pipeline.core.pairs.frames import (
    WORK_INDEX,
    canonical_pairs,
    clean_text,
    empty_candidates,
    hash_seed,
    pair_key,
)
from artsim_pipeline.core.pairs.groups import circular_pairs, layout, partners_per_anchor
from artsim_pipeline.core.pairs.rules import PairRules

#: Groups are keyed per split (``group * 3 + split_code``), so no pair crosses splits.
_SPLITS = 3


def same_artist(
    works: pl.DataFrame, makers: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame:
    """Pairs of works that share a maker (one group per maker)."""
    work_hash = works.get_column("work_hash").gather(makers.get_column("work_index"))
    members = makers.select(
        pl.col("maker_id").cast(pl.UInt64).alias("group"), "work_index"
    ).with_columns(work_hash.hash(hash_seed(seed, 10)).alias("order_hash"))
    pairs = circular_pairs(layout(members, ["order_hash"]), rules)
    return canonical_pairs(pairs, "same_artist", rules.same_artist_weight)


def _maker_sides(laid_out: pl.DataFrame, rules: PairRules) -> pl.DataFrame:
    """Per maker and pair of sources: the smaller side anchors (``source_code``,
    ``anchor_side_size``), the other side's ``other_side_size`` and ``other_side_start`` in
    the layout, and ``partners`` per anchor."""
    sides = laid_out.group_by("maker_id", "source_code").agg(
        pl.len().cast(pl.Int64).alias("side_size"),
        pl.col("group_start").first().alias("side_start"),
    )
    both = sides.join(sides, on="maker_id", suffix="_other").filter(
        pl.col("source_code") < pl.col("source_code_other")
    )
    first_anchors = pl.col("side_size") <= pl.col("side_size_other")

    def pick(first: str, second: str) -> pl.Expr:
        return pl.when(first_anchors).then(first).otherwise(second)

    both = both.select(
        "maker_id",
        pick("source_code", "source_code_other").alias("source_code"),
        pick("side_size", "side_size_other").alias("anchor_side_size"),
        pick("side_size_other", "side_size").alias("other_side_size"),
        pick("side_start_other", "side_start").alias("other_side_start"),
    )
    return both.with_columns(
        partners_per_anchor(rules, pl.col("other_side_size"), pl.col("anchor_side_size")).alias(
            "partners"
        )
    )


def cross_museum_artist(
    works: pl.DataFrame, makers: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame:
    """Pairs of works by one maker from two sources: each work of the smaller side is paired
    with ``K`` works of the other side (one group per maker and source)."""
    work_ids = makers.get_column("work_index")
    members = (
        makers.select("maker_id", "work_index")
        .with_columns(
            works.get_column("source_code").gather(work_ids).alias("source_code"),
            works.get_column("work_hash")
            .gather(work_ids)
            .hash(hash_seed(seed, 11))
            .alias("order_hash"),
        )
        .drop_nulls("source_code")
        .filter(pl.col("source_code").n_unique().over("maker_id") >= 2)
    )
    if members.is_empty():
        return empty_candidates()
    n_sources = int(works.get_column("source_code").max() or 0) + 1
    laid_out = layout(
        members.with_columns(
            (pl.col("maker_id").cast(pl.UInt64) * n_sources + pl.col("source_code")).alias("group")
        ),
        ["order_hash"],
    )
    sides = _maker_sides(laid_out, rules)
    group_cap = pl.lit(rules.max_pairs_per_group, dtype=pl.Int64)
    anchors = (
        laid_out.join(sides, on=["maker_id", "source_code"])
        .filter(pl.col("rank") < group_cap // pl.col("partners"))
        .select(
            "work_index",
            "rank",
            "partners",
            "other_side_size",
            "other_side_start",
            pl.int_ranges(0, pl.col("partners"), dtype=pl.Int64).alias("step"),
        )
        .explode("step")
    )
    rows = (
        anchors.get_column("other_side_start")
        + (
            anchors.get_column("rank") * anchors.get_column("partners")
            + anchors.get_column("step")
        )
        % anchors.get_column("other_side_size")
    ).cast(WORK_INDEX)
    pairs = pl.DataFrame(
        {
            "anchor_id": anchors.get_column("work_index"),
            "partner_id": laid_out.get_column("work_index").gather(rows),
        }
    )
    return canonical_pairs(pairs, "cross_museum_artist", rules.cross_museum_artist_weight)


def same_culture_classification(works: pl.DataFrame, rules: PairRules, seed: int) -> pl.DataFrame:
    """Pairs of works of one culture and classification whose date ranges overlap (within
    ``date_overlap_tolerance_years``)."""
    n_classifications = int(works.get_column("classification_code").max() or 0) + 1
    culture_classification = (
        pl.col("culture_code").cast(pl.UInt64) * n_classifications + pl.col("classification_code")
    )
    members = works.filter(
        pl.col("culture_code").is_not_null()
        & pl.col("classification_code").is_not_null()
        & pl.col("year_begin").is_not_null()
    ).select(
        (culture_classification * _SPLITS + pl.col("split_code")).alias("group"),
        "work_index",
        "year_begin",
        "year_end",
        pl.col("work_hash").hash(hash_seed(seed, 12)).alias("order_hash"),
    )
    # partners: the next works in date order (they overlap most often); anchors: random
    laid_out = layout(members, ["year_begin", "year_end", "order_hash"])
    laid_out = (
        laid_out.with_row_index("row")
        .sort("group", "order_hash", "work_index")
        .with_columns(
            (pl.int_range(pl.len(), dtype=pl.Int64) - pl.col("group_start")).alias("anchor_rank")
        )
        .sort("row")
    )
    pairs = circular_pairs(laid_out, rules, wrap=False, anchor_rank="anchor_rank")
    tolerance = rules.date_overlap_tolerance_years
    begin, end = works.get_column("year_begin"), works.get_column("year_end")
    anchor, partner = pairs.get_column("anchor_id"), pairs.get_column("partner_id")
    overlap = (begin.gather(partner) <= end.gather(anchor) + tolerance) & (
        begin.gather(anchor) <= end.gather(partner) + tolerance
    )
    return canonical_pairs(
        pairs.filter(overlap),
        "same_culture_classification",
        rules.same_culture_classification_weight,
    )


def _eligible_tags(works: pl.DataFrame, rules: PairRules) -> tuple[pl.DataFrame, pl.Series]:
    """``(work_index, tag_code, document_frequency)`` for every tag of every work held by at
    least 2 and at most the cap of works, and the inverse document frequency of every tag
    code (tag codes in tag order)."""
    n_works = works.height
    tagged = (
        works.select("work_index", "tags")
        .explode("tags")
        .select("work_index", clean_text(pl.col("tags")).alias("tag"))
        .drop_nulls("tag")
    )
    vocabulary = tagged.select(pl.col("tag").unique().sort()).with_row_index("tag_code")
    tagged = tagged.join(vocabulary, on="tag").select("work_index", "tag_code").unique()
    frequency_cap = max(2, int(rules.max_tag_df_fraction * n_works))
    counts = tagged.group_by("tag_code").agg(pl.len().alias("document_frequency"))
    frequencies = np.zeros(vocabulary.height, dtype=np.int64)
    frequencies[counts.get_column("tag_code").to_numpy()] = counts.get_column(
        "document_frequency"
    ).to_numpy()
    frequency_of_tag = pl.Series("document_frequency", frequencies)
    tagged = tagged.with_columns(
        frequency_of_tag.gather(tagged.get_column("tag_code")).alias("document_frequency")
    ).filter((pl.col("document_frequency") >= 2) & (pl.col("document_frequency") <= frequency_cap))
    idf = (float(n_works) / frequency_of_tag.cast(pl.Float64)).log()
    return tagged, idf


def _shared_tag_weights(
    works: pl.DataFrame, pairs: pl.DataFrame, tagged: pl.DataFrame, idf: pl.Series, rules: PairRules
) -> pl.Series:
    """Per pair: the rarity of every eligible tag the two works share, as a weight."""
    tags_of_work = (
        works.select("work_index")
        .join(tagged.group_by("work_index").agg(pl.col("tag_code")), on="work_index", how="left")
        .sort("work_index")
        .get_column("tag_code")
    )
    shared = (
        pl.DataFrame(
            {
                "pair_row": pl.int_range(pairs.height, dtype=WORK_INDEX, eager=True),
                "left_tags": tags_of_work.gather(pairs.get_column("left_id")),
                "right_tags": tags_of_work.gather(pairs.get_column("right_id")),
            }
        )
        .select(
            "pair_row",
            pl.col("left_tags").list.set_intersection("right_tags").alias("tag_code"),
        )
        .explode("tag_code")
        .drop_nulls("tag_code")
    )
    shared = (
        shared.with_columns(idf.gather(shared.get_column("tag_code")).alias("idf"))
        .group_by("pair_row")
        .agg(pl.col("idf").sum())
    )
    total = pl.Series(np.zeros(pairs.height)).scatter(
        shared.get_column("pair_row"), shared.get_column("idf")
    )
    return (rules.shared_tags_weight * (total / math.log(works.height)).clip(0.0, 1.0)).cast(
        pl.Float32
    )


def shared_tags(works: pl.DataFrame, rules: PairRules, seed: int) -> pl.DataFrame:
    """Pairs of works that share a rare subject tag (one group per tag, each work in the
    groups of its ``max_tags_per_work`` rarest eligible tags), weighted by rarity."""
    if works.height < 3:
        return empty_candidates()
    tagged, idf = _eligible_tags(works, rules)
    if tagged.is_empty():
        return empty_candidates()
    tagged = tagged.sort("work_index", "document_frequency", "tag_code")
    # each work joins the groups of its max_tags_per_work rarest tags
    run = tagged.get_column("work_index").rle_id()
    run_lengths = tagged.get_column("work_index").rle().struct.field("len")
    first_of_work = (run_lengths.cum_sum() - run_lengths).gather(run)
    rarest = tagged.filter(
        (pl.int_range(pl.len(), dtype=pl.Int64) - first_of_work) < rules.max_tags_per_work
    )
    work_ids = rarest.get_column("work_index")
    members = rarest.select(
        (
            pl.col("tag_code").cast(pl.UInt64) * _SPLITS
            + works.get_column("split_code").gather(work_ids)
        ).alias("group"),
        "work_index",
        works.get_column("work_hash")
        .gather(work_ids)
        .hash(hash_seed(seed, 13))
        .alias("order_hash"),
    )
    sampled = circular_pairs(layout(members, ["order_hash"]), rules)
    # weight 1.0 for now: the rarity weights are computed once the pairs are unique
    pairs = canonical_pairs(sampled, "shared_tags", 1.0)
    pairs = pairs.with_columns(pair_key()).unique(subset=["pair_key"], maintain_order=True)
    if pairs.is_empty():
        return empty_candidates()
    weight = _shared_tag_weights(works, pairs, tagged, idf, rules)
    return pairs.with_columns(weight.alias("weight")).filter(pl.col("weight") > 0).drop("pair_key")
