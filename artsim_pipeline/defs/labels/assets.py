"""Weak labels: similar / dissimilar pairs mined from the metadata museums already publish."""

import hashlib
import json
from dataclasses import fields

import polars as pl
from dagster import (
    AssetCheckResult, AssetCheckSpec, AssetExecutionContext, AutomationCondition, Config, DataVersion, MetadataValue, ObserveResult, Output, asset,
    observable_source_asset,
)

from artsim_pipeline.core.features import frame_fingerprint
from artsim_pipeline.core.pairs import PairRules, mine_pairs, pair_stats, preview_pairs, validate_pairs
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.resources.storage import ArtsimStorage

_DEFAULTS = PairRules()


class WeakPairsConfig(Config):
    """Rule weights, caps, the negative ratio and split fractions (defaults: `core.pairs.PairRules`)."""

    seed: int = 0
    same_artist_weight: float = _DEFAULTS.same_artist_weight
    cross_museum_artist_weight: float = _DEFAULTS.cross_museum_artist_weight
    same_culture_classification_weight: float = _DEFAULTS.same_culture_classification_weight
    shared_tags_weight: float = _DEFAULTS.shared_tags_weight
    easy_negative_weight: float = _DEFAULTS.easy_negative_weight
    hard_negative_weight: float = _DEFAULTS.hard_negative_weight
    max_pairs_per_anchor: int = _DEFAULTS.max_pairs_per_anchor
    max_pairs_per_group: int = _DEFAULTS.max_pairs_per_group
    max_tag_df_fraction: float = _DEFAULTS.max_tag_df_fraction
    negatives_per_positive: float = _DEFAULTS.negatives_per_positive
    hard_fraction: float = _DEFAULTS.hard_fraction
    easy_negative_min_year_gap: int = _DEFAULTS.easy_negative_min_year_gap
    ratio_tolerance: float = _DEFAULTS.ratio_tolerance
    train_fraction: float = _DEFAULTS.train_fraction
    val_fraction: float = _DEFAULTS.val_fraction
    test_fraction: float = _DEFAULTS.test_fraction
    split_seed: int = _DEFAULTS.split_seed
    curator_pick_weight: float = 2.0

    def rules(self) -> PairRules:
        names = {f.name for f in fields(PairRules)}
        return PairRules(**{k: v for k, v in self.model_dump().items() if k in names})


# validate_pairs' results, grouped into the checks shown in the UI (all blocking: training
# on leaking or malformed pairs produces metrics that lie)
PAIR_CHECKS = {
    "pairs_well_formed": ("columns", "no_self_pairs", "canonical_order", "no_duplicate_pairs", "valid_values"),
    "both_ends_exist": ("ends_exist",),
    "splits_disjoint": ("split_disjoint_artworks", "split_disjoint_makers"),
    "label_ratio_in_bounds": ("ratio_within_bounds",),
}


@observable_source_asset(
    group_name="labels",
    required_resource_keys={"storage"},
    # observed every 5 minutes by the `automate_pipeline` sensor (and by `artsim materialize`)
    automation_condition=AutomationCondition.cron_tick_passed("*/5 * * * *"),
)
def curator_judgments(context) -> ObserveResult:
    """The curators' judgments recorded by `artsim serve` (`feedback/judgments.jsonl` of the
    storage). Observing it gives a data version, so new judgments make `weak_pairs` stale."""
    from artsim_pipeline.resources.artefacts import stored_judgments

    records = stored_judgments(context.resources.storage)
    version = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()[:16] if records else "none"
    return ObserveResult(data_version=DataVersion(version), metadata={"judgments": len(records)})


# What the miner reads of an artwork (`core.pairs.works`): no title or text, so a retitled work
# leaves `weak_pairs`, and the model, the index and the near-duplicates' search, up to date.
PAIR_MINING_COLUMNS = ("artwork_id", "source", "artists", "date_begin", "date_end", "department", "classification", "culture",
                       "tags")


@asset(group_name="labels", kinds={"polars", "parquet"}, code_version="1")
def pair_mining_fields(artworks: pl.DataFrame) -> Output[pl.DataFrame]:
    """Each artwork's fields the weak-pair rules compare: museum, makers, dates, department,
    classification, culture and tags, sorted by artwork_id. Its data version is its content,
    so only a change to these fields mines the pairs again."""
    table = artworks.select([c for c in PAIR_MINING_COLUMNS if c in artworks.columns]).sort("artwork_id")
    fingerprint = frame_fingerprint(table)
    return Output(table, data_version=DataVersion(fingerprint), metadata={"rows": table.height, "fingerprint": fingerprint})


@asset(
    group_name="labels",
    kinds={"polars", "parquet"},
    code_version="1",
    deps=[curator_judgments],
    check_specs=[AssetCheckSpec(name, asset="weak_pairs", blocking=True) for name in PAIR_CHECKS],
)
def weak_pairs(context: AssetExecutionContext, config: WeakPairsConfig, pair_mining_fields: pl.DataFrame, storage: ArtsimStorage):
    """Labelled pairs (artwork_id_a, artwork_id_b, label, rule, weight) mined from shared makers,
    culture + classification + period, rare subject tags and cross-museum makers, with easy and
    hard negatives, split train/val/test by maker group so that no maker crosses splits; plus
    curators' picks from `artsim serve` as high-weight `curator_pick` pairs. Mined from
    `pair_mining_fields`, not `artworks`: a retitle leaves it up to date."""
    rules = config.rules()
    mined = mine_pairs(pair_mining_fields, rules, seed=config.seed)
    curator, curator_dropped = curator_pairs(storage, mined, set(pair_mining_fields["artwork_id"].to_list()), config.curator_pick_weight)
    pairs = pl.concat([mined.join(curator.select("artwork_id_a", "artwork_id_b"), on=["artwork_id_a", "artwork_id_b"], how="anti"), curator])
    stats = pair_stats(pairs)
    preview = preview_pairs(pairs, pair_mining_fields, n=12).drop("title_a", "title_b")  # no titles here: makers show who is paired
    fingerprint = frame_fingerprint(pairs)
    yield Output(
        pairs,
        # the data version is the content: pairs mined again to the same table leave training,
        # evaluation and the index up to date
        data_version=DataVersion(fingerprint),
        metadata={
            "rows": pairs.height,
            "fingerprint": fingerprint,
            "positives": stats["positives"],
            "negatives": stats["negatives"],
            "negatives_per_positive": round(stats["negatives_per_positive"], 3),
            "by_rule": MetadataValue.json(stats["by_rule"]),
            "by_split_and_label": MetadataValue.json(stats["by_split_label"]),
            "split_fractions": MetadataValue.json(stats["split_fractions"]),
            "positives_per_artwork": MetadataValue.json(stats["positives_per_artwork"]),
            "artworks_in_pairs": stats["artworks"],
            "curator_pairs": curator.height,
            "curator_picks_not_usable": curator_dropped,
            "preview": markdown_table(preview, list(preview.columns)),
        },
    )
    # the miner's own rules are checked on what it mined; curator pairs were checked on the way in
    results = {name: (passed, details) for name, passed, details in validate_pairs(mined, pair_mining_fields, rules)}
    for check, members in PAIR_CHECKS.items():
        found = {m: results[m] for m in members if m in results}
        yield AssetCheckResult(
            check_name=check,
            passed=all(passed for passed, _ in found.values()) and bool(found),
            metadata={m: MetadataValue.text(f"{'ok' if passed else 'FAILED'}: {details}") for m, (passed, details) in found.items()},
        )


# What training, evaluation and the classifiers read of an artwork: no title, maker or text, so
# a retitled work leaves the model, its evaluation, the vectors and the classifiers up to date.
TRAINING_LABEL_COLUMNS = ("artwork_id", "source", "image_sha256", "department", "classification", "culture", "date_begin", "date_end")


@asset(group_name="labels", kinds={"polars", "parquet"}, code_version="1")
def training_labels(artworks: pl.DataFrame) -> Output[pl.DataFrame]:
    """Each artwork's museum, image (sha256) and the metadata the similarity model uses as
    auxiliary targets and agreement criteria, which the classifiers predict: department,
    classification, culture, dates and the period (epoch) they give. Its data version is its
    content, so only a change to these columns retrains anything."""
    from artsim_pipeline.core.ml.classifiers import period_label

    table = artworks.select(TRAINING_LABEL_COLUMNS).unique("artwork_id", keep="first").sort("artwork_id")
    table = table.with_columns(period=pl.Series([period_label(b, e) for b, e in table.select("date_begin", "date_end").iter_rows()],
                                                dtype=pl.String))
    fingerprint = frame_fingerprint(table)
    return Output(
        table,
        data_version=DataVersion(fingerprint),
        metadata={
            "rows": table.height,
            "fingerprint": fingerprint,
            "with_image": table.filter(pl.col("image_sha256").is_not_null()).height,
            "by_source": MetadataValue.json(dict(table.group_by("source").len().sort("source").iter_rows())),
            "preview": markdown_table(table, list(table.columns)),
        },
    )


def curator_pairs(storage: ArtsimStorage, mined: pl.DataFrame, known_ids: set[str], weight: float) -> tuple[pl.DataFrame, int]:
    """Curators' picks as positive pairs, in the split both works already belong to.

    A pick whose two works are in different splits (or in none) is left out and counted, so the
    splits stay group-disjoint and no test pair is trained on.
    """
    from artsim_pipeline.core.feedback import judgments_to_pairs
    from artsim_pipeline.resources.artefacts import judgments_table

    picks = judgments_to_pairs(judgments_table(storage), weight=weight)
    if picks.height == 0:
        return picks.select(mined.columns).cast(mined.schema), 0
    split_of = pl.concat([
        mined.select(pl.col("artwork_id_a").alias("artwork_id"), "split"),
        mined.select(pl.col("artwork_id_b").alias("artwork_id"), "split"),
    ]).unique("artwork_id")
    usable = (
        picks.filter(pl.col("artwork_id_a").is_in(list(known_ids)) & pl.col("artwork_id_b").is_in(list(known_ids)))
        .drop("split")
        .join(split_of.rename({"artwork_id": "artwork_id_a", "split": "split_a"}), on="artwork_id_a", how="inner")
        .join(split_of.rename({"artwork_id": "artwork_id_b", "split": "split_b"}), on="artwork_id_b", how="inner")
        .filter(pl.col("split_a") == pl.col("split_b"))
        .with_columns(split=pl.col("split_a"))
        .select(mined.columns)
        .cast(mined.schema)
    )
    return usable, picks.height - usable.height
