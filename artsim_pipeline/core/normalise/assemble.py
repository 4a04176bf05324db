"""The table assembly every source shares: ok raw rows -> staging -> ``(artworks, quarantine)``.

:func:`normalise_records` runs one source: its records decoded (:mod:`.decode`) and mapped by
the source's ``stage`` hook, or staged by a stager of its own (:func:`normalise_staged`: the
museums of ``core/museums/`` and the collection exports); then the shared finishing: id
checks, HTML/entity/whitespace cleaning, truncation, placeholder makers out of ``artists`` into
``attribution_note``, dates, row-level rules
(:func:`artsim_pipeline.core.expectations.row_rule_exprs`), image hashes from ``raw_images``,
duplicate resolution, final schema.

Invariant: every raw row with ``status == "ok"`` ends up in exactly one of the two frames
(duplicate ids included: the losers are quarantined with rule ``duplicate_id``), so ``ok rows
== len(artworks) + len(quarantine)``. Nothing raises on bad data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import polars as pl

from artsim_pipeline.core.expectations import row_rule_exprs
from artsim_pipeline.core.normalise.decode import decode_records
from artsim_pipeline.core.normalise.fields import (
    clean_list, clean_text, clean_url, parse_timestamp, split_placeholder_makers, unescape_list, unescape_text,
)  # fmt: skip
from artsim_pipeline.core.normalise.layout import LIST_COLUMNS, MAKERS_DTYPE, TEXT_COLUMNS, URL_COLUMNS, RecordSource
from artsim_pipeline.core.normalise.quarantine import id_failures, quarantine_frame, resolve_duplicates
from artsim_pipeline.core.schema import ARTWORKS_SCHEMA, UTC_DATETIME, empty_artworks, empty_quarantine

__all__ = ["normalise_records", "normalise_staged", "ok_rows", "attach_image_hashes"]

_S = pl.String()
Stager = Callable[[pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]]


def normalise_staged(
    source: str,
    raw_objects: pl.DataFrame,
    raw_images: pl.DataFrame | None,
    stager: Stager,
    *,
    id_field: str,
    id_pattern: str,
    id_prefix: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The shared driver for records staged by a source module of their own (the museums of
    ``core/museums/`` that read JSON in Python, the collection exports).

    ``stager(raw)`` maps the ok raw rows (``_row``, ``source_id``, ``raw_json``, ...) to
    :data:`~.layout.STAGE_SCHEMA` rows plus failures (``_row``, ``rule``, ``reason``); ids (which must
    match ``id_pattern``), cleaning, row rules, image hashes, duplicates and the quarantine
    frame are then exactly as for the APIs, and artwork ids read ``<id_prefix>:<id>``.
    """
    src = RecordSource(source, {}, {}, id_field, id_pattern=id_pattern, id_prefix=id_prefix)
    return normalise_records(src, raw_objects, raw_images, stager)


def normalise_records(
    src: RecordSource,
    raw_objects: pl.DataFrame,
    raw_images: pl.DataFrame | None,
    stager: Stager | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(artworks, quarantine)`` of one source: ``stager``'s staging, else ``src``'s records
    decoded and mapped by its ``stage`` hook; then the shared finishing."""
    raw = ok_rows(raw_objects)
    if raw.height == 0:
        return empty_artworks(), empty_quarantine()
    quarantined_at = datetime.now(UTC)

    if stager is not None:
        stage, failures = stager(raw)
    else:
        decoded, failures = decode_records(src, raw)
        stage = src.stage(decoded)
    artworks, more_failures = _finish(src, stage, raw, raw_images)
    failures = pl.concat([failures, *more_failures], how="vertical")
    quarantine = quarantine_frame(src.name, raw, failures, quarantined_at)

    assert artworks.height + quarantine.height == raw.height, "normalise lost or duplicated rows"
    return artworks, quarantine


def ok_rows(raw_objects: pl.DataFrame) -> pl.DataFrame:
    """The ``status == "ok"`` rows with a row index and the columns the rest relies on."""
    cols = raw_objects.columns
    status = pl.col("status") if "status" in cols else pl.lit("ok")
    raw = raw_objects.filter(status.cast(pl.String).str.strip_chars().str.to_lowercase() == "ok")

    def col_or_null(name: str, dtype: pl.DataType | None = None) -> pl.Expr:
        expr = pl.col(name) if name in cols else pl.lit(None, dtype=dtype or pl.String())
        return expr.alias(name)

    return raw.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"),
        col_or_null("source_id").cast(pl.String),
        col_or_null("raw_json").cast(pl.String),
        col_or_null("content_hash").cast(pl.String),
        col_or_null("fetched_at", UTC_DATETIME),
    )


def _finish(
    src: RecordSource, stage: pl.DataFrame, raw: pl.DataFrame, raw_images: pl.DataFrame | None
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    failures: list[pl.DataFrame] = []
    stage = stage.join(
        raw.select("_row", "source_id", "fetched_at", "content_hash"),
        on="_row",
        how="left",
        maintain_order="left",
    )

    # --- ids -----------------------------------------------------------------------
    stage = stage.with_columns(id_failures(src).alias("_bad"))
    bad = pl.col("_bad").struct.field("rule").is_not_null()
    failures.append(
        stage.filter(bad).select(
            "_row",
            pl.col("_bad").struct.field("rule"),
            pl.col("_bad").struct.field("reason"),
        )
    )
    stage = stage.filter(~bad).drop("_bad", "message")

    # --- text cleaning ----------------------------------------------------------------
    stage = stage.with_columns(unescape_text(stage.get_column(name)) for name in TEXT_COLUMNS)
    for name in (*LIST_COLUMNS, "makers"):
        stage = unescape_list(stage, name)
    el = pl.element()
    maker = pl.struct(
        name=clean_text(el.struct.field("name")), role=clean_text(el.struct.field("role"))
    )
    stage = stage.with_columns(
        *(clean_text(pl.col(name)).alias(name) for name in TEXT_COLUMNS),
        *(clean_url(pl.col(name)).alias(name) for name in URL_COLUMNS),
        pl.col("makers")
        .list.eval(maker)
        .list.filter(el.struct.field("name").is_not_null())
        .fill_null(pl.lit([], dtype=MAKERS_DTYPE)),
    )
    stage = split_placeholder_makers(stage)
    for name in LIST_COLUMNS:
        stage = clean_list(stage, name)
    if src.post is not None:
        stage = src.post(stage)  # (a collection export's staging is already final)

    # --- dates, ids, timestamps -------------------------------------------------------
    begin, end = pl.col("begin"), pl.col("end")
    swapped = (begin.is_not_null() & end.is_not_null() & (begin > end)).fill_null(False)
    stage = stage.with_columns(
        pl.concat_str(pl.lit(f"{src.id_prefix or src.name}:"), pl.col("rec_id")).alias("artwork_id"),
        pl.lit(src.name).alias("source"),
        pl.col("rec_id").alias("source_id"),
        pl.col("makers").list.eval(el.struct.field("name")).alias("artists"),
        pl.col("makers").list.eval(el.struct.field("role")).alias("artist_roles"),
        pl.when(swapped).then(end).otherwise(begin).alias("date_begin"),
        pl.when(swapped).then(begin).otherwise(end).alias("date_end"),
        swapped.alias("dates_swapped"),
        parse_timestamp(pl.col("modified")).alias("metadata_modified"),
        pl.lit(None, dtype=_S).alias("image_sha256"),
    )

    # --- row-level rules (shared with the validation module) -------------------------
    rule, reason = row_rule_exprs()
    stage = stage.with_columns(rule.alias("_rule"), reason.alias("_reason"))
    failures.append(
        stage.filter(pl.col("_rule").is_not_null()).select(
            "_row", rule=pl.col("_rule"), reason=pl.col("_reason")
        )
    )
    stage = stage.filter(pl.col("_rule").is_null())

    # --- images, duplicates, final schema ---------------------------------------------
    if raw_images is not None:
        stage = attach_image_hashes(stage, raw_images)
    stage, duplicates = resolve_duplicates(stage)
    failures.append(duplicates)
    if not stage.get_column("_row").is_sorted():
        stage = stage.sort("_row")
    artworks = stage.select(pl.col(name).cast(dtype) for name, dtype in ARTWORKS_SCHEMA.items())
    return artworks, failures


def attach_image_hashes(stage: pl.DataFrame, raw_images: pl.DataFrame) -> pl.DataFrame:
    """``image_sha256`` from ``raw_images``: same source_id and URL, else the last ok image."""
    cols = raw_images.columns
    if not {"source_id", "sha256"} <= set(cols):
        return stage
    status = pl.col("status").cast(pl.String) == "ok" if "status" in cols else pl.lit(True)
    images = raw_images.filter(status & pl.col("sha256").is_not_null()).select(
        pl.col("source_id").cast(pl.String),
        (pl.col("url") if "url" in cols else pl.lit(None)).cast(pl.String).alias("url"),
        pl.col("sha256").cast(pl.String),
    )
    if images.height == 0:
        return stage
    exact = images.unique(["source_id", "url"], keep="last", maintain_order=True).rename(
        {"sha256": "_sha_exact", "url": "image_url"}
    )
    latest = images.unique("source_id", keep="last", maintain_order=True).select(
        "source_id", pl.col("sha256").alias("_sha_any")
    )
    stage = stage.join(
        exact, on=["source_id", "image_url"], how="left", maintain_order="left"
    ).join(latest, on="source_id", how="left", maintain_order="left")
    return stage.with_columns(
        pl.coalesce(
            "_sha_exact", pl.when(pl.col("image_url").is_not_null()).then(pl.col("_sha_any"))
        ).alias("image_sha256")
    ).drop("_sha_exact", "_sha_any")


