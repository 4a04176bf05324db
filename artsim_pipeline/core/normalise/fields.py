"""Shared record fields: text, lists, URLs, years and timestamps as every source cleans them.

Polars expressions (and two per-column helpers that touch only the rows needing Python:
HTML entities). Used by the source mappings and by the shared finishing (:mod:`.assemble`).
"""

from __future__ import annotations

import html

import polars as pl

from artsim_pipeline.core.names import placeholder_makers
from artsim_pipeline.core.schema import MAX_LIST_ITEMS, MAX_TEXT_CHARS

__all__ = [
    "nonempty", "year_from_number_text", "year_from_iso", "json_text_field", "clean_text", "clean_url", "clean_list",
    "unescape_text", "unescape_list", "parse_timestamp", "split_placeholder_makers",
]  # fmt: skip

_S = pl.String()

_ENTITY_RE = r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
_BLOCK_TAG_RE = r"(?i)<\s*/?\s*(?:br|p|div|li|tr|td)\b[^<>]*>"
_TAG_RE = r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>"
_CONTROL_RE = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"
_URL_RE = r"^https?://\S+$"
#: Runs of whitespace other than a single plain space (so clean text is left untouched).
_SPACES_RE = r"\s{2,}|[^\S ]"


def nonempty(expr: pl.Expr) -> pl.Expr:
    """Null for null/blank strings (before cleaning: a cheap pre-check)."""
    return pl.when(expr.str.strip_chars().str.len_bytes() > 0).then(expr)


def year_from_number_text(expr: pl.Expr) -> pl.Expr:
    """``1850``, ``"1850"``, ``" -450 "``, ``"1850.0"`` -> 1850.0; anything else -> null."""
    text = expr.str.strip_chars()
    as_float = text.cast(pl.Float64, strict=False)
    return pl.coalesce(
        text.cast(pl.Int64, strict=False).cast(pl.Float64),
        pl.when(as_float == as_float.floor()).then(as_float),
    )


def year_from_iso(expr: pl.Expr) -> pl.Expr:
    """``"1588-01-01T00:00:00.000Z"`` / ``"-0500-01-01"`` / ``"1588"`` -> the year."""
    return expr.str.extract(r"^\s*([+-]?\d{1,7})(?:-|T|\s*$)", 1).cast(pl.Float64, strict=False)


def json_text_field(expr: pl.Expr, *keys: str) -> pl.Expr:
    """An element that may be a plain string or the JSON text of ``{"<key>": ...}``."""
    is_object = expr.str.starts_with("{")
    from_object = pl.coalesce([expr.str.json_path_match(f"$.{key}") for key in keys])
    return pl.when(is_object).then(from_object).otherwise(expr)


def clean_text(expr: pl.Expr) -> pl.Expr:
    """Strip tags, drop control characters, collapse whitespace, truncate; blank -> null."""
    expr = (
        expr.str.replace_all(_BLOCK_TAG_RE, " ")
        .str.replace_all(_TAG_RE, "")
        .str.replace_all(_CONTROL_RE, "")
        .str.replace_all(_SPACES_RE, " ")
        .str.strip_chars()
        .str.slice(0, MAX_TEXT_CHARS)
        .str.strip_chars_end()
    )
    return expr.replace("", None)


def clean_url(expr: pl.Expr) -> pl.Expr:
    """Trimmed http(s) URL, else null (``""``, relative or malformed URLs)."""
    expr = expr.str.strip_chars()
    return pl.when(expr.str.contains(_URL_RE)).then(expr)


def clean_list(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """Clean every element of a list-of-strings column; drop blanks and case-insensitive
    repeats (first spelling wins), keep at most ``MAX_LIST_ITEMS``; null -> ``[]``.

    Works on the exploded column (cheaper than ``list.eval`` over many short lists).
    """
    empty = pl.lit([], dtype=pl.List(_S))
    if not (frame.get_column(name).list.len().fill_null(0) > 0).any():
        return frame.with_columns(pl.col(name).fill_null(empty))
    long = (
        frame.select("_row", name)
        .explode(name)
        .with_columns(clean_text(pl.col(name)).alias(name))
        .filter(pl.col(name).is_not_null())
        .with_columns(pl.col(name).str.to_lowercase().alias("_key"))
        .unique(subset=["_row", "_key"], keep="first", maintain_order=True)
    )
    fixed = long.group_by("_row", maintain_order=True).agg(
        pl.col(name).head(MAX_LIST_ITEMS).alias("_clean")
    )
    return (
        frame.join(fixed, on="_row", how="left", maintain_order="left")
        .with_columns(pl.col("_clean").fill_null(empty).alias(name))
        .drop("_clean")
    )


def unescape_text(series: pl.Series) -> pl.Series:
    mask = series.str.contains(_ENTITY_RE).fill_null(False)
    if not mask.any():
        return series
    idx = mask.arg_true()
    fixed = pl.Series([html.unescape(v) for v in series.gather(idx).to_list()], dtype=pl.String)
    return series.scatter(idx, fixed)


def unescape_list(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """Unescape HTML entities inside a list column (of strings or of maker structs).

    Only the rows holding an entity are touched: exploded, unescaped as flat strings,
    re-imploded and merged back on ``_row``.
    """
    inner = frame.schema[name].inner  # type: ignore[attr-defined]
    el = pl.element()
    fields = [f.name for f in inner.fields] if isinstance(inner, pl.Struct) else []
    probe = (
        pl.concat_str([el.struct.field(f) for f in fields], separator=" ", ignore_nulls=True)
        if fields
        else el
    )
    has_entity = pl.col(name).list.eval(probe.str.contains(_ENTITY_RE).fill_null(False)).list.any()
    long = frame.filter(has_entity.fill_null(False)).select("_row", name).explode(name)
    if long.height == 0:
        return frame
    if fields:
        long = long.unnest(name)
        long = long.with_columns(unescape_text(long.get_column(f)) for f in fields)
        value = pl.struct(fields)
    else:
        long = long.with_columns(unescape_text(long.get_column(name)))
        value = pl.col(name)
    fixed = long.group_by("_row", maintain_order=True).agg(value.alias("_fixed"))
    return (
        frame.join(fixed, on="_row", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_fixed", name).alias(name))
        .drop("_fixed")
    )


def parse_timestamp(expr: pl.Expr) -> pl.Expr:
    """ISO-8601 timestamps with 0-9 fractional digits, ``Z`` or an offset -> UTC datetime."""
    text = expr.str.strip_chars()
    return pl.coalesce(
        text.str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.fZ", time_zone="UTC", time_unit="us", strict=False
        ),
        text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", strict=False)
        .dt.convert_time_zone("UTC"),
        text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="us", strict=False)
        .dt.replace_time_zone("UTC"),
        text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False)
        .dt.replace_time_zone("UTC"),
        text.str.to_datetime("%Y-%m-%d", time_zone="UTC", time_unit="us", strict=False),
    )


def split_placeholder_makers(stage: pl.DataFrame) -> pl.DataFrame:
    """Placeholder makers leave ``makers`` for ``attribution_note``; the makers left are capped
    at ``MAX_LIST_ITEMS``.

    A placeholder names nobody (:func:`artsim_pipeline.core.names.is_anonymous`: "Unidentified
    artist", "Edo artist", "Unknown, American", "Ubekendt", "Anonymous, French, 18th century"):
    it is not a maker, but what the museum says about who made the work, so the distinct
    placeholders of a record are kept, in order, as ``"Unidentified artist; Edo artist"`` (null
    when there are none). The one rule for every source: the shared finishing calls this.

    Each distinct name is tested once, and only the rows holding a placeholder are rewritten
    (exploded, filtered, merged back on ``_row``).
    """
    capped = pl.col("makers").list.head(MAX_LIST_ITEMS)
    no_note = pl.lit(None, dtype=_S).alias("attribution_note")
    names = stage.get_column("makers").explode().struct.field("name")
    placeholders = placeholder_makers(names.drop_nulls().unique().to_list())
    if not placeholders:
        return stage.with_columns(capped, no_note)
    long = (
        stage.select("_row", "makers")
        .explode("makers")
        .with_columns(pl.col("makers").struct.field("name").is_in(sorted(placeholders)).alias("_placeholder"))
    )
    touched = long.filter(pl.col("_placeholder").any().over("_row"))
    name = pl.col("makers").struct.field("name")
    fixed = touched.group_by("_row", maintain_order=True).agg(
        pl.col("makers").filter(~pl.col("_placeholder")).alias("_kept"),
        name.filter(pl.col("_placeholder")).unique(maintain_order=True).str.join("; ").alias("attribution_note"),
    )
    return (
        stage.join(fixed, on="_row", how="left", maintain_order="left")
        .with_columns(
            pl.coalesce("_kept", "makers").list.head(MAX_LIST_ITEMS).alias("makers"),
            pl.col("attribution_note").str.slice(0, MAX_TEXT_CHARS),
        )
        .drop("_kept")
    )
