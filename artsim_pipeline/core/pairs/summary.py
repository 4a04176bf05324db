"""Summaries of a pair table for the Dagster UI: :func:`pair_stats` and :func:`preview_pairs`."""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.pairs.rules import RULES, SPLITS

_PREVIEW_SCHEMA = {
    "rule": pl.String,
    "label": pl.Int8,
    "weight": pl.Float32,
    "split": pl.String,
    "artwork_id_a": pl.String,
    "title_a": pl.String,
    "artists_a": pl.String,
    "artwork_id_b": pl.String,
    "title_b": pl.String,
    "artists_b": pl.String,
}


def _pair_ends(pairs: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Both ends of every pair as ``artwork_id`` rows, with ``columns``."""
    return pl.concat(
        [
            pairs.select(pl.col("artwork_id_a").alias("artwork_id"), *columns),
            pairs.select(pl.col("artwork_id_b").alias("artwork_id"), *columns),
        ]
    )


def _by_split(pairs: pl.DataFrame, split_ids: pl.DataFrame, n_ids: int) -> dict[str, dict]:
    """Per split: pairs, positives, negatives, the split's share of the pairs and of the
    artworks, and negatives per positive."""
    n = pairs.height
    by_split = {}
    for split in SPLITS:
        in_split = pairs.filter(pl.col("split") == split)
        positives = int((in_split.get_column("label") == 1).sum()) if in_split.height else 0
        artworks_in_split = split_ids.filter(pl.col("split") == split).height
        by_split[split] = {
            "pairs": int(in_split.height),
            "positives": positives,
            "negatives": int(in_split.height - positives),
            "pair_fraction": float(in_split.height / n) if n else 0.0,
            "artwork_fraction": float(artworks_in_split / n_ids) if n_ids else 0.0,
            "negatives_per_positive": float((in_split.height - positives) / positives)
            if positives
            else 0.0,
        }
    return by_split


def pair_stats(pairs: pl.DataFrame) -> dict:
    """Summary of a pair table (plain Python values, ready for asset metadata).

    Counts by rule, label, split and split x label; positives per artwork (either end)
    min / median / max; negatives per positive overall and per split; split fractions of the
    pairs and of the distinct artworks that appear in them.
    """
    n = pairs.height

    def counts(*columns: str) -> dict:
        if n == 0:
            return {}
        frame = pairs.group_by(*columns).len().sort(*columns)
        if len(columns) == 1:
            return {str(k): int(v) for k, v in frame.iter_rows()}
        return {"/".join(str(x) for x in row[:-1]): int(row[-1]) for row in frame.iter_rows()}

    positive_pairs = pairs.filter(pl.col("label") == 1)
    positives_per_artwork = (
        _pair_ends(positive_pairs).group_by("artwork_id").len().get_column("len")
    )
    by_label = pairs.group_by("label").len() if n else pl.DataFrame({"label": [], "len": []})
    n_positives = int(positive_pairs.height)
    n_negatives = n - n_positives
    split_ids = _pair_ends(pairs, "split").unique()
    n_ids = split_ids.get_column("artwork_id").n_unique() if n else 0
    by_split = _by_split(pairs, split_ids, n_ids)
    has_positives = bool(positives_per_artwork.len())
    return {
        "pairs": int(n),
        "positives": n_positives,
        "negatives": int(n_negatives),
        "negatives_per_positive": float(n_negatives / n_positives) if n_positives else 0.0,
        "by_rule": counts("rule"),
        "by_label": {str(k): int(v) for k, v in by_label.sort("label").iter_rows()} if n else {},
        "by_split": counts("split"),
        "by_split_label": counts("split", "label"),
        "split_fractions": {s: by_split[s]["pair_fraction"] for s in SPLITS},
        "artwork_split_fractions": {s: by_split[s]["artwork_fraction"] for s in SPLITS},
        "splits": by_split,
        "artworks": int(n_ids),
        "positives_per_artwork": {
            "min": int(positives_per_artwork.min()) if has_positives else 0,
            "median": float(positives_per_artwork.median()) if has_positives else 0.0,
            "max": int(positives_per_artwork.max()) if has_positives else 0,
        },
        "mean_weight_by_rule": (
            {
                str(k): round(float(v), 4)
                for k, v in pairs.group_by("rule")
                .agg(pl.col("weight").mean())
                .sort("rule")
                .iter_rows()
            }
            if n
            else {}
        ),
    }


def preview_pairs(pairs: pl.DataFrame, artworks: pl.DataFrame, n: int = 10) -> pl.DataFrame:
    """Up to ``n`` example pairs, spread over the rules (round robin, deterministic), with the
    titles and makers of both works: for the Dagster UI."""
    if pairs.is_empty() or n <= 0:
        return pl.DataFrame(schema=_PREVIEW_SCHEMA)
    priority = {rule: i for i, rule in enumerate(RULES)}
    picked = (
        pairs.with_columns(
            pl.concat_str("artwork_id_a", pl.lit("|"), "artwork_id_b").hash(7).alias("pair_hash"),
            pl.col("rule")
            .replace_strict(priority, default=len(RULES), return_dtype=pl.Int32)
            .alias("rule_priority"),
        )
        .with_columns(pl.col("pair_hash").rank("ordinal").over("rule").alias("rank_in_rule"))
        .filter(pl.col("rank_in_rule") <= n)
        .sort("rank_in_rule", "rule_priority")
        .head(n)
    )
    info = artworks.select(
        pl.col("artwork_id").cast(pl.String),
        pl.col("title").cast(pl.String)
        if "title" in artworks.columns
        else pl.lit(None, dtype=pl.String).alias("title"),
        (
            pl.col("artists").fill_null(pl.lit([], dtype=pl.List(pl.String))).list.join("; ")
            if "artists" in artworks.columns
            else pl.lit(None, dtype=pl.String)
        ).alias("artists"),
    )
    preview = picked.join(
        info.rename({"artwork_id": "artwork_id_a", "title": "title_a", "artists": "artists_a"}),
        on="artwork_id_a",
        how="left",
        maintain_order="left",
    ).join(
        info.rename({"artwork_id": "artwork_id_b", "title": "title_b", "artists": "artists_b"}),
        on="artwork_id_b",
        how="left",
        maintain_order="left",
    )
    return preview.select(list(_PREVIEW_SCHEMA)).cast(_PREVIEW_SCHEMA)
