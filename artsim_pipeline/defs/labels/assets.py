"""Weak labels: similar / dissimilar pairs mined from the metadata museums already publish."""

from dataclasses import fields

import polars as pl
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, Config, MetadataValue, Output, asset

from artsim_pipeline.core.features import frame_fingerprint
from artsim_pipeline.core.pairs import PairRules, mine_pairs, pair_stats, preview_pairs, validate_pairs
from artsim_pipeline.defs.metadata import markdown_table

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


@asset(
    group_name="labels",
    kinds={"polars", "parquet"},
    code_version="1",
    check_specs=[AssetCheckSpec(name, asset="weak_pairs", blocking=True) for name in PAIR_CHECKS],
)
def weak_pairs(context: AssetExecutionContext, config: WeakPairsConfig, artworks: pl.DataFrame):
    """Labelled pairs (artwork_id_a, artwork_id_b, label, rule, weight) mined from shared makers,
    culture + classification + period, rare subject tags and cross-museum makers, with easy and
    hard negatives, split train/val/test by maker group so that no maker crosses splits."""
    rules = config.rules()
    pairs = mine_pairs(artworks, rules, seed=config.seed)
    stats = pair_stats(pairs)
    preview = preview_pairs(pairs, artworks, n=12)
    yield Output(
        pairs,
        metadata={
            "rows": pairs.height,
            "fingerprint": frame_fingerprint(pairs),
            "positives": stats["positives"],
            "negatives": stats["negatives"],
            "negatives_per_positive": round(stats["negatives_per_positive"], 3),
            "by_rule": MetadataValue.json(stats["by_rule"]),
            "by_split_and_label": MetadataValue.json(stats["by_split_label"]),
            "split_fractions": MetadataValue.json(stats["split_fractions"]),
            "positives_per_artwork": MetadataValue.json(stats["positives_per_artwork"]),
            "artworks_in_pairs": stats["artworks"],
            "preview": markdown_table(preview, list(preview.columns)),
        },
    )
    results = {name: (passed, details) for name, passed, details in validate_pairs(pairs, artworks, rules)}
    for check, members in PAIR_CHECKS.items():
        found = {m: results[m] for m in members if m in results}
        yield AssetCheckResult(
            check_name=check,
            passed=all(passed for passed, _ in found.values()) and bool(found),
            metadata={m: MetadataValue.text(f"{'ok' if passed else 'FAILED'}: {details}") for m, (passed, details) in found.items()},
        )
