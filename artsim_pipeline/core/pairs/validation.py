"""Checks on a pair table: :func:`validate_pairs` (the ``weak_pairs`` asset checks read them)."""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.pairs.rules import (
    PAIRS_SCHEMA,
    POSITIVE_RULES,
    RULES,
    SPLITS,
    PairRules,
)
from artsim_pipeline.core.pairs.works import artwork_makers

#: ``(name, passed, details)``
CheckResult = tuple[str, bool, str]

_LEFT, _RIGHT = pl.col("artwork_id_a"), pl.col("artwork_id_b")


def _result(name: str, failures: int, failed: str, passed: str) -> CheckResult:
    return (name, failures == 0, failed if failures else passed)


def _examples(frame: pl.DataFrame, *columns: str) -> list:
    return frame.select(columns).head(3).rows() if columns else frame.head(3).rows()


def _shape_checks(pairs: pl.DataFrame) -> list[CheckResult]:
    """``no_self_pairs``, ``canonical_order``, ``no_duplicate_pairs``."""
    self_pairs = pairs.filter(_LEFT == _RIGHT)
    reversed_ = pairs.filter(_LEFT > _RIGHT)
    duplicated = (
        pairs.select(
            pl.min_horizontal(_LEFT, _RIGHT).alias("first_id"),
            pl.max_horizontal(_LEFT, _RIGHT).alias("second_id"),
            "label",
        )
        .group_by("first_id", "second_id")
        .agg(pl.len().alias("rows"), pl.col("label").n_unique().alias("labels"))
        .filter(pl.col("rows") > 1)
    )
    both = int((duplicated.get_column("labels") > 1).sum()) if duplicated.height else 0
    examples = _examples(duplicated.sort("first_id", "second_id"), "first_id", "second_id")
    return [
        _result(
            "no_self_pairs",
            self_pairs.height,
            f"{self_pairs.height} self-pairs, e.g. {_examples(self_pairs, 'artwork_id_a')}",
            "none",
        ),
        _result(
            "canonical_order",
            reversed_.height,
            f"{reversed_.height} pairs with artwork_id_a > artwork_id_b",
            "artwork_id_a < artwork_id_b everywhere",
        ),
        _result(
            "no_duplicate_pairs",
            duplicated.height,
            f"{duplicated.height} unordered pairs listed more than once ({both} both positive "
            f"and negative), e.g. {examples}",
            "one row per unordered pair",
        ),
    ]


def _value_check(pairs: pl.DataFrame) -> CheckResult:
    """``valid_values``: label 0/1 matching the rule, known rule and split, finite weight > 0."""
    weight = pl.col("weight").cast(pl.Float64)
    label_of_rule = pl.col("rule").is_in(list(POSITIVE_RULES)).cast(pl.Int8)
    bad = pairs.filter(
        ~pl.col("label").is_in([0, 1]).fill_null(False)
        | ~pl.col("rule").is_in(list(RULES)).fill_null(False)
        | (pl.col("label") != label_of_rule).fill_null(True)
        | ~pl.col("split").is_in(list(SPLITS)).fill_null(False)
        | ~((weight > 0) & weight.is_finite()).fill_null(False)
    )
    return _result(
        "valid_values",
        bad.height,
        f"{bad.height} rows with a bad label, rule, split or weight, e.g. {_examples(bad)}",
        "labels, rules, splits and weights valid",
    )


def _ends_check(pairs: pl.DataFrame, artworks: pl.DataFrame) -> CheckResult:
    """``ends_exist``: both ends of every pair are artworks."""
    ids = artworks.select(pl.col("artwork_id").cast(pl.String).alias("id")).unique()
    ends = pl.concat([pairs.select(_LEFT.alias("id")), pairs.select(_RIGHT.alias("id"))]).unique()
    unknown = ends.join(ids, on="id", how="anti").sort("id")
    return _result(
        "ends_exist",
        unknown.height,
        f"{unknown.height} pair ends not in artworks, e.g. {unknown.head(3).to_series().to_list()}",
        "every pair end is an artwork",
    )


def _split_checks(pairs: pl.DataFrame, artworks: pl.DataFrame) -> list[CheckResult]:
    """``split_disjoint_artworks`` and ``split_disjoint_makers``."""
    placed = pl.concat(
        [
            pairs.select(_LEFT.alias("artwork_id"), "split"),
            pairs.select(_RIGHT.alias("artwork_id"), "split"),
        ]
    ).unique()
    in_several = (
        placed.group_by("artwork_id")
        .agg(pl.col("split").n_unique().alias("splits"))
        .filter(pl.col("splits") > 1)
        .sort("artwork_id")
    )
    results = [
        _result(
            "split_disjoint_artworks",
            in_several.height,
            f"{in_several.height} artworks in more than one split, "
            f"e.g. {in_several.head(3).get_column('artwork_id').to_list()}",
            "no artwork in two splits",
        )
    ]
    if "artists" not in artworks.columns:
        results.append(_result("split_disjoint_makers", 1, "artworks has no artists column", ""))
        return results
    leaking = (
        placed.join(artwork_makers(artworks), on="artwork_id")
        .group_by("maker")
        .agg(pl.col("split").n_unique().alias("splits"))
        .filter(pl.col("splits") > 1)
        .sort("maker")
    )
    results.append(
        _result(
            "split_disjoint_makers",
            leaking.height,
            f"{leaking.height} makers in more than one split, "
            f"e.g. {leaking.head(3).get_column('maker').to_list()}",
            "no maker in two splits",
        )
    )
    return results


def _ratio_check(pairs: pl.DataFrame, rules: PairRules) -> CheckResult:
    """``ratio_within_bounds``: negatives per positive within ``ratio_tolerance`` of
    ``negatives_per_positive``, overall and in every split."""
    target, tolerance = rules.negatives_per_positive, rules.ratio_tolerance
    low, high = target * (1 - tolerance), target * (1 + tolerance)
    counts = (
        pairs.group_by("split")
        .agg(
            (pl.col("label") == 1).sum().alias("positives"),
            (pl.col("label") == 0).sum().alias("negatives"),
        )
        .sort("split")
    )
    scopes = [
        (
            "all",
            int(counts.get_column("positives").sum()),
            int(counts.get_column("negatives").sum()),
        )
    ]
    scopes += [(split, int(p), int(q)) for split, p, q in counts.iter_rows()]
    problems, seen = [], []
    for scope, positives, negatives in scopes:
        if positives == 0:
            if negatives > 0:
                problems.append(f"{scope}: {negatives} negatives and no positives")
            continue
        ratio = negatives / positives
        seen.append(f"{scope}={ratio:.3f}")
        if not low - 1e-9 <= ratio <= high + 1e-9:
            problems.append(f"{scope}: {ratio:.3f} negatives per positive")
    return _result(
        "ratio_within_bounds",
        len(problems),
        f"{'; '.join(problems)} (allowed [{low:.3f}, {high:.3f}])",
        f"negatives per positive {', '.join(seen) or 'n/a'} within [{low:.3f}, {high:.3f}]",
    )


def validate_pairs(
    pairs: pl.DataFrame, artworks: pl.DataFrame, rules: PairRules = PairRules()
) -> list[CheckResult]:
    """Checks on a pair table: ``[(name, passed, details), ...]``.

    ``columns``; ``no_self_pairs``; ``canonical_order`` (``artwork_id_a < artwork_id_b``);
    ``no_duplicate_pairs`` (one row per unordered pair, whatever the label, so never the same
    pair as both positive and negative); ``valid_values`` (label 0/1 matching the rule, known
    rule and split names, finite weights > 0); ``ends_exist`` (both ends are artworks);
    ``split_disjoint_artworks`` and ``split_disjoint_makers`` (no artwork, and no normalised
    maker, in two splits); ``ratio_within_bounds`` (negatives per positive within
    ``ratio_tolerance`` of ``negatives_per_positive``, overall and in every split).
    """
    missing = [c for c in PAIRS_SCHEMA if c not in pairs.columns]
    results = [
        _result(
            "columns", len(missing), f"missing columns: {missing}", "all contract columns present"
        )
    ]
    if missing:
        return results
    results += _shape_checks(pairs)
    results.append(_value_check(pairs))
    results.append(_ends_check(pairs, artworks))
    results += _split_checks(pairs, artworks)
    results.append(_ratio_check(pairs, rules))
    return results
