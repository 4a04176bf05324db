"""The rules of weak-pair mining: their names, the ``weak_pairs`` output schema and the
configuration (:class:`PairRules`) every stage reads."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import polars as pl

POSITIVE_RULES: tuple[str, ...] = (
    "cross_museum_artist",
    "same_artist",
    "same_culture_classification",
    "shared_tags",
)
NEGATIVE_RULES: tuple[str, ...] = ("hard_negative", "easy_negative")
#: All rules, in priority order (used to break weight ties when two rules give one pair).
RULES: tuple[str, ...] = POSITIVE_RULES + NEGATIVE_RULES
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: The ``weak_pairs`` columns (a contract: ../shared/ARCHITECTURE.md).
PAIRS_SCHEMA: dict[str, pl.DataType] = {
    "artwork_id_a": pl.String(),
    "artwork_id_b": pl.String(),
    "label": pl.Int8(),
    "rule": pl.String(),
    "weight": pl.Float32(),
    "split": pl.String(),
}

#: rule -> code; the code is also the priority (lower wins ties), positives first.
RULE_CODE: dict[str, int] = {rule: code for code, rule in enumerate(RULES)}
#: split name -> split code (the ``split_code`` column of the works table).
SPLIT_CODE: dict[str, int] = {split: code for code, split in enumerate(SPLITS)}


@dataclass(frozen=True)
class PairRules:
    """Rule weights, caps, negative ratio and split fractions for :func:`mine_pairs`.

    A rule whose weight is 0 is disabled.  Weights are the label confidence that a pair
    carries into training; when two rules produce the same pair the higher weight wins
    (ties by the order of :data:`RULES`), and a pair that is positive by any rule is never
    kept as a negative.
    """

    # positive rules
    same_artist_weight: float = 1.0
    cross_museum_artist_weight: float = 1.0
    same_culture_classification_weight: float = 0.6
    shared_tags_weight: float = 0.5
    # negative rules
    easy_negative_weight: float = 1.0
    hard_negative_weight: float = 0.7

    #: Each work anchors at most ``max_pairs_per_anchor // 2`` pairs per rule group (and is
    #: the partner of about as many), so it takes part in at most ``max_pairs_per_anchor``
    #: pairs per group.
    max_pairs_per_anchor: int = 6
    #: No rule group (a maker, a culture+classification, a tag) yields more pairs than this.
    max_pairs_per_group: int = 50_000
    #: Date ranges may miss each other by this many years and still "overlap".
    date_overlap_tolerance_years: int = 0
    #: Tags held by more than this fraction of the works are ignored (the cap is never
    #: below 2 works, so that tiny collections still pair).
    max_tag_df_fraction: float = 0.05
    #: Each work joins the groups of at most this many of its rarest eligible tags.
    max_tags_per_work: int = 3

    #: Negatives drawn per positive pair (per split), and the hard share of them.
    negatives_per_positive: float = 1.0
    hard_fraction: float = 0.5
    #: Easy negatives: the date ranges are at least this many years apart.
    easy_negative_min_year_gap: int = 200
    #: Easy negatives also need different classifications (not only departments).
    easy_negative_requires_different_classification: bool = True
    #: Candidate partners tried per negative slot before giving up on it.
    negative_candidates: int = 6
    #: ``validate_pairs`` accepts a negative:positive ratio within this relative tolerance.
    ratio_tolerance: float = 0.2

    train_fraction: float = 0.7
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    #: Seed of the split assignment (independent of the sampling seed of ``mine_pairs``).
    split_seed: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name.endswith("_weight") and (value < 0 or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite weight >= 0, got {value}")
        fractions = (self.train_fraction, self.val_fraction, self.test_fraction)
        if min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
        if self.max_pairs_per_anchor < 1 or self.max_pairs_per_group < 1:
            raise ValueError("max_pairs_per_anchor and max_pairs_per_group must be >= 1")
        if not 0.0 <= self.hard_fraction <= 1.0:
            raise ValueError(f"hard_fraction must be in [0, 1], got {self.hard_fraction}")
        if self.negatives_per_positive < 0:
            raise ValueError("negatives_per_positive must be >= 0")
        if not 0.0 < self.max_tag_df_fraction <= 1.0:
            raise ValueError("max_tag_df_fraction must be in (0, 1]")
        if self.negative_candidates < 1 or self.max_tags_per_work < 1:
            raise ValueError("negative_candidates and max_tags_per_work must be >= 1")

    def weight(self, rule: str) -> float:
        """The configured weight of ``rule``."""
        if rule not in RULES:
            raise KeyError(rule)
        return float(getattr(self, f"{rule}_weight"))

    def rule_weights(self) -> dict[str, float]:
        return {rule: self.weight(rule) for rule in RULES}

    @property
    def split_fractions(self) -> dict[str, float]:
        return dict(
            zip(SPLITS, (self.train_fraction, self.val_fraction, self.test_fraction), strict=True)
        )


def empty_pairs() -> pl.DataFrame:
    """A ``weak_pairs`` table without rows."""
    return pl.DataFrame(schema=PAIRS_SCHEMA)
