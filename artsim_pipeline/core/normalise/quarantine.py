"""Quarantine rules the shared finishing applies, their reasons, and the quarantine table.

``missing_id`` / ``invalid_id`` / ``id_mismatch`` (:func:`id_failures`), ``duplicate_id`` (the
losers of :func:`resolve_duplicates`); the row-level rules are shared with the validation
module (:func:`artsim_pipeline.core.expectations.row_rule_exprs`) and the decoding rules live in
:mod:`.decode`. :func:`quarantine_frame` turns the failures into ``artworks_quarantine`` rows.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from artsim_pipeline.core.normalise.layout import FAILURE_SCHEMA, RecordSource
from artsim_pipeline.core.schema import MAX_TEXT_CHARS, QUARANTINE_SCHEMA, UTC_DATETIME, empty_quarantine

__all__ = ["id_failures", "resolve_duplicates", "is_cross_row_duplicate", "quarantine_frame"]

#: How the reason of a loser of :func:`resolve_duplicates` begins (an export's own per-row
#: ``duplicate_id`` reads "id ... appears more than once in the export").
DUPLICATE_REASON_PREFIX = "duplicate "


def id_failures(src: RecordSource) -> pl.Expr:
    """A struct (rule, reason) describing why the record's id is unusable, else null."""
    rec_id = pl.col("rec_id")
    raw_id = pl.col("source_id").str.strip_chars()
    field = src.id_field
    api_message = pl.when(pl.col("message").is_not_null()).then(
        pl.format(" (API message: {})", pl.col("message"))
    ).otherwise(pl.lit(""))
    if src.malformed_id is not None:
        malformed, malformed_reason = src.malformed_id(rec_id)
    elif src.id_pattern is not None:
        malformed = ~rec_id.str.contains(src.id_pattern) | rec_id.str.contains(r"[\x00-\x1F\x7F]")
        malformed_reason = pl.format(f"{field} {{}} does not match {src.id_pattern}", rec_id.str.slice(0, 60))
    else:
        malformed = rec_id.str.contains(r"[\x00-\x1F\x7F]") | (rec_id.str.len_chars() > 200)
        malformed_reason = pl.format(f"{field} {{}} has control characters or is too long", rec_id.str.slice(0, 60))
    missing = rec_id.is_null() | (rec_id.str.len_bytes() == 0)
    mismatch = raw_id.is_not_null() & (raw_id != rec_id)
    rule = (
        pl.when(missing)
        .then(pl.lit("missing_id"))
        .when(malformed)
        .then(pl.lit("invalid_id"))
        .when(mismatch)
        .then(pl.lit("id_mismatch"))
    )
    reason = (
        pl.when(missing)
        .then(pl.concat_str(pl.lit(f"record has no {field}"), api_message))
        .when(malformed)
        .then(malformed_reason)
        .when(mismatch)
        .then(pl.format(f"record {field} {{}} differs from raw source_id {{}}", rec_id, raw_id))
    )
    return pl.struct(rule=rule, reason=reason)


def resolve_duplicates(stage: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the latest ``metadata_modified`` per ``artwork_id``; the others are quarantined.

    Ties go to the latest ``fetched_at``, then to the later raw row.
    """
    if not stage.get_column("artwork_id").is_duplicated().any():
        return stage, pl.DataFrame(schema=FAILURE_SCHEMA)
    ranked = stage.sort(
        ["artwork_id", "metadata_modified", "fetched_at", "_row"],
        descending=[False, True, True, True],
        nulls_last=True,
    ).with_columns(pl.int_range(pl.len()).over("artwork_id").alias("_rank"))

    def winner(name: str) -> pl.Expr:
        return pl.col(name).first().over("artwork_id")

    reasons = ranked.with_columns(
        winner("metadata_modified").cast(pl.String).fill_null("null").alias("_kept_mod"),
        winner("content_hash").alias("_kept_hash"),
    ).filter(pl.col("_rank") > 0)
    same = (pl.col("content_hash") == pl.col("_kept_hash")).fill_null(False)
    losers = reasons.select(
        "_row",
        rule=pl.lit("duplicate_id"),
        reason=pl.format(
            DUPLICATE_REASON_PREFIX + "{}: kept the record with metadata_modified {}; this one has {}{}",
            pl.col("artwork_id"),
            pl.col("_kept_mod"),
            pl.col("metadata_modified").cast(pl.String).fill_null("null"),
            pl.when(same).then(pl.lit(" (same content)")).otherwise(pl.lit(" (different content)")),
        ),
    )
    kept = ranked.filter(pl.col("_rank") == 0).drop("_rank")
    return kept, losers


def is_cross_row_duplicate(rule: pl.Expr, reason: pl.Expr) -> pl.Expr:
    """True for the quarantine rows :func:`resolve_duplicates` made: the outcome of a record that
    depends on the other records (which one wins), unlike every other rule."""
    return (rule == "duplicate_id") & reason.str.starts_with(DUPLICATE_REASON_PREFIX)


def quarantine_frame(
    source: str, raw: pl.DataFrame, failures: pl.DataFrame, quarantined_at: datetime
) -> pl.DataFrame:
    """The ``artworks_quarantine`` rows of ``failures``: each with its raw id and JSON, in raw order."""
    if failures.height == 0:
        return empty_quarantine()
    return (
        failures.join(raw.select("_row", "source_id", "raw_json"), on="_row", how="left")
        .sort("_row")
        .select(
            pl.lit(source).alias("source"),
            pl.col("source_id"),
            pl.col("rule"),
            pl.col("reason").str.slice(0, MAX_TEXT_CHARS),
            pl.col("raw_json"),
            pl.lit(quarantined_at).cast(UTC_DATETIME).alias("quarantined_at"),
        )
        .select(pl.col(name).cast(dtype) for name, dtype in QUARANTINE_SCHEMA.items())
    )


