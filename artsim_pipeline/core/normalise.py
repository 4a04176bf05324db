"""Normalise verbatim museum API records (``raw_objects``) into the unified ``artworks`` table.

Public API
----------
:func:`normalise` (dispatching on the source), :func:`normalise_met`, :func:`normalise_smk`.
Each returns ``(artworks, quarantine)`` with :data:`~artsim_pipeline.core.schema.ARTWORKS_SCHEMA`
and :data:`~artsim_pipeline.core.schema.QUARANTINE_SCHEMA`.

Invariant: every raw row with ``status == "ok"`` ends up in exactly one of the two frames
(duplicate ids included: the losers are quarantined with rule ``duplicate_id``), so
``ok rows == len(artworks) + len(quarantine)``.  Nothing raises on bad data: a record that
cannot be normalised is quarantined with a rule id and a readable reason.

How it works (fast path / slow path)
------------------------------------
1. *Decode.* The ``raw_json`` texts are decoded by polars' NDJSON reader against an explicit,
   projected schema (only the fields we use), in chunks; fields holding structs are read as
   JSON text and decoded per column with ``str.json_decode`` (half the cost).  A chunk or
   column that fails to decode (bad JSON, a string where a list belongs...) is split until
   the offending rows are isolated.  Those rows, rows without an id, and rows whose decoded
   strings look like coerced non-strings (``"[..."``, ``"{..."``, ``"true"``) take the *slow
   path*: ``json.loads`` plus a schema-driven Python coercer that produces exactly the same
   projected row (a test checks this on every real record) or names the rule and reason.
2. *Map.* Source-specific polars expressions turn the decoded structs into one staging
   layout (:func:`_met_stage`, :func:`_smk_stage`).
3. *Finish* (shared): id checks, HTML/entity/whitespace cleaning, truncation, dates, row-level
   rules (:func:`artsim_pipeline.core.expectations.row_rule_exprs`), image hashes from
   ``raw_images``, duplicate resolution, final schema.

Only HTML entity unescaping and percent-encoding of a few URLs run in Python, and only on the
rows that need them.  ``benchmarks/bench_normalise.py`` times 500,000 Met records.
"""

from __future__ import annotations

import html
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import polars as pl

from artsim_pipeline.core.expectations import row_rule_exprs
from artsim_pipeline.core.text import scrub_json_value
from artsim_pipeline.core.schema import (
    ARTWORKS_SCHEMA,
    MAX_LIST_ITEMS,
    MAX_TEXT_CHARS,
    MET_DEPARTMENT_LOOKUP,
    QUARANTINE_SCHEMA,
    UTC_DATETIME,
    empty_artworks,
    empty_quarantine,
)

__all__ = ["normalise", "normalise_met", "normalise_smk", "normalise_staged", "STAGE_SCHEMA", "MET_LANDING_URL", "SMK_LANDING_URL"]

MET_LANDING_URL = "https://www.metmuseum.org/art/collection/search/"
SMK_LANDING_URL = "https://open.smk.dk/artwork/image/"
SMK_IIIF_SUFFIX = "/full/!1024,/0/default.jpg"

#: Rows per NDJSON decode call; a failing chunk costs about this many extra row decodes.
_CHUNK_ROWS = 16_384
#: A failing chunk is split into this many parts until parts are at most ``_MIN_SPLIT`` rows.
_SPLIT_WAYS = 8
_MIN_SPLIT = 64

# --------------------------------------------------------------------------------------
# Projected record schemas (only what normalisation reads)
# --------------------------------------------------------------------------------------
_S = pl.String()

MET_RECORD_SCHEMA: dict[str, pl.DataType] = {
    "objectID": _S,
    "title": _S,
    "constituents": pl.List(pl.Struct({"name": _S, "role": _S})),
    "artistDisplayName": _S,
    "artistRole": _S,
    "artistNationality": _S,
    "objectBeginDate": _S,  # ints that sometimes arrive as strings: parsed later
    "objectEndDate": _S,
    "objectDate": _S,
    "department": _S,
    "classification": _S,
    "objectName": _S,
    "medium": _S,
    "culture": _S,
    "tags": pl.List(pl.Struct({"term": _S})),
    "primaryImage": _S,
    "primaryImageSmall": _S,
    "isPublicDomain": pl.Boolean(),
    "metadataDate": _S,
    # The API's error body, {"message": "Not a valid object"}: read by the slow path only
    # (records without an objectID always take it), to explain a missing id.
    "message": _S,
}
#: What the NDJSON fast path reads for the Met (every field it projects costs time).
MET_DECODE_SCHEMA = {k: v for k, v in MET_RECORD_SCHEMA.items() if k != "message"}

SMK_ITEM_SCHEMA: dict[str, pl.DataType] = {
    "object_number": _S,
    "titles": pl.List(pl.Struct({"title": _S, "translation": _S, "language": _S})),
    "production": pl.List(
        pl.Struct(
            {
                "creator": _S,
                "creator_forename": _S,
                "creator_surname": _S,
                "creator_nationality": _S,
                "creator_role": _S,
                "creator_qualifier": _S,
            }
        )
    ),
    "artist": pl.List(_S),
    "production_date": pl.List(pl.Struct({"start": _S, "end": _S, "period": _S})),
    "responsible_department": _S,
    "collection": pl.List(_S),
    "object_names": pl.List(pl.Struct({"name": _S})),
    # 2019: [{"material": ...}] / [{"technique": ...}]; 2026: plain strings.  Elements of
    # list-of-string fields are decoded leniently: objects arrive as their JSON text.
    "materials": pl.List(_S),
    "techniques": pl.List(_S),
    "content_subject": pl.List(_S),
    "content_person": pl.List(_S),
    "image_thumbnail": _S,
    "image_iiif_id": _S,
    "has_image": pl.Boolean(),
    "public_domain": pl.Boolean(),
    "frontend_url": _S,
    "modified": _S,
}

#: SMK's single-object call answers with a search envelope ``{"items": [...]}``.
SMK_DECODE_SCHEMA: dict[str, pl.DataType] = {
    **SMK_ITEM_SCHEMA,
    "items": pl.List(pl.Struct(SMK_ITEM_SCHEMA)),
}

_ENGLISH = ["en", "en-us", "en-gb", "eng", "english", "engelsk"]
_DANISH = ["da", "da-dk", "dan", "danish", "dansk"]
_UNKNOWN_MAKERS = ["ubekendt", "unknown", "ukendt", "anonym", "anonymous", "unknown artist"]

#: SMK's 2019 records give nationalities as Danish adjectives; the 2026 ones in English.
SMK_NATIONALITY_EN: dict[str, str] = {
    "dansk": "Danish",
    "hollandsk": "Dutch",
    "nederlandsk": "Dutch",
    "flamsk": "Flemish",
    "belgisk": "Belgian",
    "tysk": "German",
    "østrigsk": "Austrian",
    "schweizisk": "Swiss",
    "fransk": "French",
    "italiensk": "Italian",
    "spansk": "Spanish",
    "portugisisk": "Portuguese",
    "engelsk": "English",
    "britisk": "British",
    "skotsk": "Scottish",
    "irsk": "Irish",
    "amerikansk": "American",
    "svensk": "Swedish",
    "norsk": "Norwegian",
    "finsk": "Finnish",
    "islandsk": "Icelandic",
    "polsk": "Polish",
    "russisk": "Russian",
    "tjekkisk": "Czech",
    "ungarsk": "Hungarian",
    "græsk": "Greek",
    "japansk": "Japanese",
    "kinesisk": "Chinese",
}

_ENTITY_RE = r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
_BLOCK_TAG_RE = r"(?i)<\s*/?\s*(?:br|p|div|li|tr|td)\b[^<>]*>"
_TAG_RE = r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>"
_CONTROL_RE = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"
_URL_RE = r"^https?://\S+$"
#: Runs of whitespace other than a single plain space (so clean text is left untouched).
_SPACES_RE = r"\s{2,}|[^\S ]"

# Staging columns produced by the source mappings and consumed by ``_finish``.
_TEXT_COLUMNS = (
    "title", "date_text", "department", "classification", "object_type", "medium", "culture",
)  # fmt: skip
_LIST_COLUMNS = ("techniques", "tags", "nationalities")
_URL_COLUMNS = ("image_url", "landing_url")
_MAKERS_DTYPE = pl.List(pl.Struct({"name": _S, "role": _S}))
_STAGE_SCHEMA: dict[str, pl.DataType] = {
    "_row": pl.UInt32(),
    "rec_id": _S,
    "message": _S,
    "title": _S,
    "makers": _MAKERS_DTYPE,
    "nationalities": pl.List(_S),
    "begin": pl.Float64(),
    "end": pl.Float64(),
    "date_text": _S,
    "department": _S,
    "classification": _S,
    "object_type": _S,
    "medium": _S,
    "techniques": pl.List(_S),
    "culture": _S,
    "tags": pl.List(_S),
    "image_url": _S,
    "is_public_domain": pl.Boolean(),
    "landing_url": _S,
    "modified": _S,
}
_FAILURE_SCHEMA = {"_row": pl.UInt32(), "rule": _S, "reason": _S}
#: The staging layout a source mapping produces and the shared finishing consumes (public for
#: the collection exports of :mod:`artsim_pipeline.core.exports.normalise`).
STAGE_SCHEMA = _STAGE_SCHEMA
FAILURE_SCHEMA = _FAILURE_SCHEMA


# ======================================================================================
# Public API
# ======================================================================================
def normalise(
    source: str, raw_objects: pl.DataFrame, raw_images: pl.DataFrame | None = None, *, export: Any = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalise one source's ``raw_objects`` into ``(artworks, quarantine)`` with the normaliser
    its registry entry names (``core/sources.py``; Met and SMK are below, the museums added
    through the registry in ``core/museums/``).

    ``raw_images`` (optional) supplies ``image_sha256``: rows with ``status == "ok"`` joined on
    ``source_id`` and ``url`` (falling back to the object's last ok image when the URL has
    changed since the download). ``export`` is the
    :class:`~artsim_pipeline.core.exports.mapping.ExportMapping` of a collection export source.
    """
    if export is not None:
        from artsim_pipeline.core.exports.normalise import normalise_export

        if export.source != source:
            raise ValueError(f"the mapping is for source {export.source!r}, not {source!r}")
        return normalise_export(export, raw_objects, raw_images)
    from artsim_pipeline.core.sources import source_spec

    spec = source_spec(source)  # a clear ValueError for an unknown source
    if spec.normaliser is None:
        raise ValueError(f"source {source!r} has no normaliser in the registry (an export needs its mapping)")
    return _registered(spec.normaliser)(raw_objects, raw_images)


def _registered(target: str) -> Callable[..., tuple[pl.DataFrame, pl.DataFrame]]:
    """The function a registry entry names as ``"module:function"`` (imported on first use)."""
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def normalise_staged(
    source: str,
    raw_objects: pl.DataFrame,
    raw_images: pl.DataFrame | None,
    stager: Callable[[pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]],
    *,
    id_field: str,
    id_pattern: str,
    id_prefix: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The shared driver for records decoded outside this module (collection exports).

    ``stager(raw)`` maps the ok raw rows (``_row``, ``source_id``, ``raw_json``, ...) to
    :data:`STAGE_SCHEMA` rows plus failures (``_row``, ``rule``, ``reason``); ids (which must
    match ``id_pattern``), cleaning, row rules, image hashes, duplicates and the quarantine
    frame are then exactly as for the APIs, and artwork ids read ``<id_prefix>:<id>``.
    """
    src = _Source(source, {}, {}, id_field, id_pattern=id_pattern, id_prefix=id_prefix)
    return _normalise(src, raw_objects, raw_images, stager)


def normalise_met(
    raw_objects: pl.DataFrame, raw_images: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalise Met Collection API ``/objects/{id}`` records (see :func:`normalise`)."""
    return _normalise(_MET, raw_objects, raw_images)


def normalise_smk(
    raw_objects: pl.DataFrame, raw_images: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalise SMK Open API items, 2019 and 2026 shapes, bare or in ``{"items": [...]}``."""
    return _normalise(_SMK, raw_objects, raw_images)


# ======================================================================================
# Driver
# ======================================================================================
@dataclass(frozen=True)
class _Source:
    name: str
    decode_schema: dict[str, pl.DataType]
    record_schema: dict[str, pl.DataType]
    id_field: str
    id_pattern: str | None = None  # ids that do not match are quarantined (invalid_id)
    id_prefix: str | None = None  # artwork ids read <id_prefix>:<id> (default: the name)


_MET = _Source("met", MET_DECODE_SCHEMA, MET_RECORD_SCHEMA, "objectID")
_SMK = _Source("smk", SMK_DECODE_SCHEMA, SMK_ITEM_SCHEMA, "object_number")


def _normalise(
    src: _Source,
    raw_objects: pl.DataFrame,
    raw_images: pl.DataFrame | None,
    stager: Callable[[pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    raw = _ok_rows(raw_objects)
    if raw.height == 0:
        return empty_artworks(), empty_quarantine()
    quarantined_at = datetime.now(UTC)

    if stager is not None:
        stage, failures = stager(raw)
    else:
        decoded, failures = _decode(src, raw)
        stage = _met_stage(decoded) if src.name == "met" else _smk_stage(decoded)
    artworks, more_failures = _finish(src, stage, raw, raw_images)
    failures = pl.concat([failures, *more_failures], how="vertical")
    quarantine = _quarantine_frame(src.name, raw, failures, quarantined_at)

    assert artworks.height + quarantine.height == raw.height, "normalise lost or duplicated rows"
    return artworks, quarantine


def _ok_rows(raw_objects: pl.DataFrame) -> pl.DataFrame:
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


# ======================================================================================
# 1. Decoding: polars NDJSON fast path, Python slow path for what it cannot decode
# ======================================================================================
def _decode(src: _Source, raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode ``raw_json`` into one struct-field column per projected field.

    Returns ``(decoded, failures)``: ``decoded`` has ``_row`` plus the fields of
    ``src.record_schema``; ``failures`` has ``_row``, ``rule``, ``reason``.
    """
    texts = raw.select("_row", "raw_json")
    stripped = pl.col("raw_json").str.strip_chars()
    empty = texts.filter(pl.col("raw_json").is_null() | (stripped.str.len_bytes() == 0))
    failures = [
        empty.select(
            "_row", rule=pl.lit("invalid_json"), reason=pl.lit("raw_json is empty or null")
        )
    ]
    candidates = texts.filter(stripped.str.starts_with("{"))
    slow_rows = texts.filter(
        pl.col("raw_json").is_not_null()
        & (stripped.str.len_bytes() > 0)
        & ~stripped.str.starts_with("{")
    )
    # Raw newlines can only be insignificant whitespace in valid JSON: flatten them so that
    # each record is one NDJSON line (the slow path still sees the original text).
    has_newline = pl.col("raw_json").str.contains("\n", literal=True) | pl.col(
        "raw_json"
    ).str.contains("\r", literal=True)
    if candidates.select(has_newline.any()).item():
        candidates = candidates.with_columns(
            pl.when(has_newline)
            .then(pl.col("raw_json").str.replace_all(r"[\r\n]", " "))
            .otherwise(pl.col("raw_json"))
        )

    # Phase 1: the NDJSON reader, with struct-bearing fields read as their JSON text (decoding
    # lists of structs inside the reader costs twice as much as decoding them afterwards).
    # Lists of strings stay in the reader: it keeps object elements as JSON text (lenient).
    nested = {
        name: dtype
        for name, dtype in src.decode_schema.items()
        if _has_struct(dtype) and name != "items"
    }
    # Booleans are read as text too ("true", "yes", 1... are coerced below, as the slow path
    # does), so that a string flag does not make the reader fail its whole chunk.
    flags = [name for name, dtype in src.decode_schema.items() if isinstance(dtype, pl.Boolean)]
    phase1 = {
        name: (_S if name in nested or name in flags else dtype)
        for name, dtype in src.decode_schema.items()
    }
    fast_parts: list[pl.DataFrame] = []
    slow_parts: list[pl.DataFrame] = [slow_rows.select("_row")]
    for start in range(0, candidates.height, _CHUNK_ROWS):
        _decode_chunk(
            candidates.slice(start, _CHUNK_ROWS),
            lambda chunk: _read_ndjson(chunk, phase1),
            fast_parts,
            slow_parts,
        )
    fast = (
        pl.concat(fast_parts, how="vertical", rechunk=False)
        if fast_parts
        else pl.DataFrame(schema={"_row": pl.UInt32(), **phase1})
    )
    # Phase 2: each nested field's text through ``str.json_decode``; values of the wrong
    # JSON type (a string where a list belongs...) go to the slow path.
    for name, dtype in nested.items():
        fast, bad_rows = _decode_nested(fast, name, dtype)
        slow_parts.append(bad_rows)
    for name in flags:
        flag = pl.col(name).str.strip_chars().str.to_lowercase()
        as_bool = flag.replace_strict(_FLAG_VALUES, default=None, return_dtype=pl.Boolean)
        fast = fast.with_columns(as_bool.alias(name), pl.col(name).alias(f"_{name}_text"))
        slow_parts.append(
            fast.filter(pl.col(f"_{name}_text").is_not_null() & pl.col(name).is_null()).select(
                "_row"
            )
        )
        fast = fast.drop(f"_{name}_text")

    if src.name == "smk":
        fast, envelopes = _unwrap_smk_envelopes(fast)
        slow_parts.append(envelopes)
    # Rows without an id (the slow path explains why), and strings the NDJSON reader coerced
    # from arrays/objects/booleans (the slow path decides whether the type was wrong).
    suspect = pl.col(src.id_field).is_null()
    for_strings = _suspect_expr(
        {name: dtype for name, dtype in src.record_schema.items() if name in fast.columns}
    )
    if for_strings is not None:
        suspect = suspect | for_strings.fill_null(False)
    mask = fast.select(suspect.fill_null(True)).to_series()
    if mask.any():
        slow_parts.append(fast.filter(mask).select("_row"))
        fast = fast.filter(~mask)
    fast = fast.select(
        "_row",
        *(
            pl.col(name) if name in fast.columns else pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in src.record_schema.items()
        ),
    )

    slow_ids = pl.concat(slow_parts, how="vertical").get_column("_row").unique()
    if slow_ids.len():
        fast = fast.join(slow_ids.to_frame(), on="_row", how="anti", maintain_order="left")
        slow_texts = raw.join(slow_ids.to_frame(), on="_row", how="semi").select(
            "_row", "source_id", "raw_json"
        )
        slow_ok, slow_failed = _decode_slow(src, slow_texts)
        fast = pl.concat([fast, slow_ok], how="vertical")  # _finish restores row order
        failures.append(slow_failed)
    return fast, pl.concat(failures, how="vertical")


def _decode_chunk(
    chunk: pl.DataFrame,
    decode: Callable[[pl.DataFrame], pl.DataFrame],
    ok_parts: list[pl.DataFrame],
    bad_parts: list[pl.DataFrame],
) -> None:
    """Decode ``chunk`` (``_row`` + text); on error split it until the bad rows are isolated.

    Decoded parts (``_row`` + decoded columns) go to ``ok_parts`` in row order; the
    ``_row`` of undecodable rows (in parts of at most ``_MIN_SPLIT``) to ``bad_parts``.
    """
    if chunk.height == 0:
        return
    try:
        ok_parts.append(chunk.select("_row").hstack(decode(chunk)))
        return
    except Exception:  # noqa: BLE001 - any decode error means "find the bad rows"
        if chunk.height <= _MIN_SPLIT:
            bad_parts.append(chunk.select("_row"))
            return
    step = max(_MIN_SPLIT, math.ceil(chunk.height / _SPLIT_WAYS))
    for start in range(0, chunk.height, step):
        _decode_chunk(chunk.slice(start, step), decode, ok_parts, bad_parts)


def _has_struct(dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.Struct):
        return True
    return isinstance(dtype, pl.List) and _has_struct(dtype.inner)


def _decode_nested(
    fast: pl.DataFrame, name: str, dtype: pl.DataType
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode the JSON text in column ``name`` to ``dtype``; return the rows that fail."""
    prefix = "[" if isinstance(dtype, pl.List) else "{"
    text = pl.col(name)
    wrong_shape = text.is_not_null() & ~text.str.starts_with(prefix)
    bad_parts = [fast.filter(wrong_shape).select("_row")]
    if bad_parts[0].height:
        texts = fast.select("_row", pl.when(wrong_shape).then(None).otherwise(text).alias(name))
    else:
        texts = fast.select("_row", name)
    ok_parts: list[pl.DataFrame] = []
    _decode_chunk(
        texts,
        lambda chunk: chunk.select(pl.col(name).str.json_decode(dtype)),
        ok_parts,
        bad_parts,
    )
    decoded = (
        pl.concat(ok_parts, how="vertical")
        if ok_parts
        else pl.DataFrame(schema={"_row": pl.UInt32(), name: dtype})
    )
    bad = pl.concat(bad_parts, how="vertical")
    if decoded.height == fast.height:
        return fast.with_columns(decoded.get_column(name)), bad
    fast = fast.drop(name).join(decoded, on="_row", how="inner", maintain_order="left")
    return fast, bad


def _read_ndjson(chunk: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Decode the chunk's ``raw_json`` texts (one JSON object each) with polars' NDJSON reader."""
    buf = io.BytesIO()
    # quote_style="never" writes every text verbatim, one per line: an NDJSON document.
    chunk.select("raw_json").write_csv(buf, include_header=False, quote_style="never")
    buf.seek(0)
    out = pl.read_ndjson(buf, schema=schema)
    if out.height != chunk.height:
        raise ValueError("NDJSON reader returned a different number of rows")
    return out


def _unwrap_smk_envelopes(fast: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replace ``{"items": [item]}`` rows by their single item; others go to the slow path."""
    envelope = pl.col("object_number").is_null() & pl.col("items").is_not_null()
    single = envelope & (pl.col("items").list.len() == 1)
    item = pl.col("items").list.first()
    unwrapped = fast.with_columns(
        pl.when(single).then(item.struct.field(name)).otherwise(pl.col(name)).alias(name)
        for name in SMK_ITEM_SCHEMA
    )
    multi = envelope & ~single
    return unwrapped.filter(~multi), unwrapped.filter(multi).select("_row")


def _looks_coerced(expr: pl.Expr) -> pl.Expr:
    return (
        expr.str.starts_with("[")
        | expr.str.starts_with("{")
        | expr.is_in(["true", "false"])
    )


def _suspect_for(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr | None:
    """True where a strictly-string leaf holds text the reader coerced from another JSON type."""
    if isinstance(dtype, pl.String):
        return _looks_coerced(expr)
    if isinstance(dtype, pl.Struct):
        parts = [
            p
            for f in dtype.fields
            if (p := _suspect_for(expr.struct.field(f.name), f.dtype)) is not None
        ]
        return pl.any_horizontal(parts) if parts else None
    if isinstance(dtype, pl.List):
        if isinstance(dtype.inner, pl.String):
            return None  # list-of-string elements are lenient (see _coerce)
        inner = _suspect_for(pl.element(), dtype.inner)
        if inner is None:
            return None
        return expr.list.eval(inner.fill_null(False)).list.any()
    return None


def _suspect_expr(schema: dict[str, pl.DataType]) -> pl.Expr | None:
    parts = [
        p for name, dtype in schema.items() if (p := _suspect_for(pl.col(name), dtype)) is not None
    ]
    return pl.any_horizontal(parts) if parts else None


class _WrongType(Exception):
    """A JSON value whose type cannot be coerced to the projected dtype."""

    def __init__(self, path: str, expected: str, value: Any) -> None:
        shown = json.dumps(value, ensure_ascii=False)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(
            f"field {path!r}: expected {expected}, got {_json_type(value)} {shown}"
        )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
_FLAG_VALUES = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}


def _coerce(value: Any, dtype: pl.DataType, path: str, lenient: bool = False) -> Any:
    """Coerce a parsed JSON value to ``dtype`` as the NDJSON reader would, or raise.

    Strings accept numbers (``1850`` -> ``"1850"``).  Booleans accept ``"true"``/``"false"``
    and 0/1.  ``lenient`` string slots (elements of list-of-string fields) also accept
    objects and arrays as their JSON text, which the source mappings interpret.
    """
    if value is None:
        return None
    if isinstance(dtype, pl.String):
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            if lenient:
                return "true" if value else "false"
            raise _WrongType(path, "a string", value)
        if isinstance(value, int | float):
            return str(value)
        if lenient:
            return json.dumps(value, ensure_ascii=False)
        raise _WrongType(path, "a string", value)
    if isinstance(dtype, pl.Boolean):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _WrongType(path, "a boolean", value)
    if isinstance(dtype, pl.List):
        if not isinstance(value, list):
            raise _WrongType(path, "an array", value)
        inner = dtype.inner
        lenient_inner = isinstance(inner, pl.String)
        return [
            _coerce(item, inner, f"{path}[{i}]", lenient_inner) for i, item in enumerate(value)
        ]
    if isinstance(dtype, pl.Struct):
        if not isinstance(value, dict):
            raise _WrongType(path, "an object", value)
        return {
            f.name: _coerce(value.get(f.name), f.dtype, f"{path}.{f.name}") for f in dtype.fields
        }
    raise TypeError(f"unsupported projected dtype {dtype}")  # programming error


def _decode_one(src: _Source, text: str, source_id: str | None) -> tuple[dict | None, str, str]:
    """Decode one record in Python: ``(row, "", "")`` or ``(None, rule, reason)``."""
    try:
        obj = json.loads(text)
    except RecursionError:
        return None, "invalid_json", f"JSON nested too deeply to parse ({len(text)} characters)"
    except (ValueError, TypeError) as exc:
        return None, "invalid_json", f"JSON does not parse: {exc}"
    # "\udfff" escapes decode to lone surrogates that no frame or file can hold: U+FFFD instead
    # (counted for the asset's metadata by core.text.lone_surrogate_escapes)
    obj, _ = scrub_json_value(obj)
    if src.name == "smk" and isinstance(obj, dict) and "object_number" not in obj:
        items = obj.get("items")
        if isinstance(items, list):
            matching = [
                it
                for it in items
                if isinstance(it, dict) and source_id is not None
                and str(it.get("object_number", "")).strip() == source_id.strip()
            ]
            if len(matching) == 1:
                obj = matching[0]
            elif len(items) == 1:
                obj = items[0]
            else:
                return None, "ambiguous_envelope", (
                    f"SMK envelope holds {len(items)} items, "
                    f"{len(matching)} with object_number {source_id!r}"
                )
    if not isinstance(obj, dict):
        return None, "not_an_object", f"the JSON document is {_json_type(obj)}, not an object"
    try:
        row = {
            name: _coerce(obj.get(name), dtype, name) for name, dtype in src.record_schema.items()
        }
    except _WrongType as exc:
        return None, "wrong_type", str(exc)
    except RecursionError:
        return None, "wrong_type", "record is nested too deeply"
    return row, "", ""


def _decode_slow(src: _Source, texts: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, ok_ids, failed = [], [], []
    for row_id, source_id, text in texts.iter_rows():
        try:
            row, rule, reason = _decode_one(src, text, source_id)
        except Exception as exc:  # noqa: BLE001 - a record nothing above foresaw: quarantined with the reason
            row, rule, reason = None, "unreadable", f"record cannot be decoded: {type(exc).__name__}: {exc}"
        if row is None:
            failed.append((row_id, rule, reason))
        else:
            rows.append(row)
            ok_ids.append(row_id)
    try:
        decoded = pl.DataFrame(rows, schema=src.record_schema, orient="row" if not rows else None)
    except Exception:  # noqa: BLE001 - find the rows polars refuses, one by one
        keep = []
        for row_id, row in zip(ok_ids, rows, strict=True):
            try:
                pl.DataFrame([row], schema=src.record_schema)
                keep.append((row_id, row))
            except Exception as exc:  # noqa: BLE001
                failed.append((row_id, "unreadable", f"record cannot be stored: {type(exc).__name__}: {exc}"))
        ok_ids, rows = [k for k, _ in keep], [r for _, r in keep]
        decoded = pl.DataFrame(rows, schema=src.record_schema, orient="row" if not rows else None)
    decoded = decoded.with_columns(pl.Series("_row", ok_ids, dtype=pl.UInt32)).select(
        "_row", *src.record_schema
    )
    return decoded, pl.DataFrame(failed, schema=_FAILURE_SCHEMA, orient="row")


# ======================================================================================
# 2. Source mappings: decoded fields -> staging layout (pure polars expressions)
# ======================================================================================
def _nonempty(expr: pl.Expr) -> pl.Expr:
    """Null for null/blank strings (before cleaning: a cheap pre-check)."""
    return pl.when(expr.str.strip_chars().str.len_bytes() > 0).then(expr)


def _year_from_number_text(expr: pl.Expr) -> pl.Expr:
    """``1850``, ``"1850"``, ``" -450 "``, ``"1850.0"`` -> 1850.0; anything else -> null."""
    text = expr.str.strip_chars()
    as_float = text.cast(pl.Float64, strict=False)
    return pl.coalesce(
        text.cast(pl.Int64, strict=False).cast(pl.Float64),
        pl.when(as_float == as_float.floor()).then(as_float),
    )


def _year_from_iso(expr: pl.Expr) -> pl.Expr:
    """``"1588-01-01T00:00:00.000Z"`` / ``"-0500-01-01"`` / ``"1588"`` -> the year."""
    return expr.str.extract(r"^\s*([+-]?\d{1,7})(?:-|T|\s*$)", 1).cast(pl.Float64, strict=False)


def _met_stage(d: pl.DataFrame) -> pl.DataFrame:
    c = pl.col
    el = pl.element()
    makers = c("constituents").list.eval(
        pl.struct(name=el.struct.field("name"), role=el.struct.field("role"))
    )
    has_makers = makers.list.eval(
        el.struct.field("name").str.strip_chars().str.len_bytes().fill_null(0) > 0
    ).list.any()
    display_maker = pl.concat_list(
        pl.struct(name=c("artistDisplayName"), role=_nonempty(c("artistRole")))
    )
    nationality = _nonempty(c("artistNationality"))
    rec_id = c("objectID").str.strip_chars()
    return d.select(
        "_row",
        rec_id.alias("rec_id"),
        c("message"),
        c("title"),
        pl.when(has_makers.fill_null(False))
        .then(makers)
        .when(_nonempty(c("artistDisplayName")).is_not_null())
        .then(display_maker)
        .otherwise(pl.lit([], dtype=_MAKERS_DTYPE))
        .alias("makers"),
        pl.when(nationality.is_not_null())
        .then(pl.concat_list(nationality))
        .otherwise(pl.lit([], dtype=pl.List(_S)))
        .alias("nationalities"),
        _year_from_number_text(c("objectBeginDate")).alias("begin"),
        _year_from_number_text(c("objectEndDate")).alias("end"),
        c("objectDate").alias("date_text"),
        c("department"),
        pl.coalesce(_nonempty(c("classification")), c("objectName")).alias("classification"),
        c("objectName").alias("object_type"),
        c("medium"),
        pl.lit([], dtype=pl.List(_S)).alias("techniques"),
        c("culture"),
        c("tags").list.eval(el.struct.field("term")).alias("tags"),
        pl.coalesce(_nonempty(c("primaryImageSmall")), _nonempty(c("primaryImage"))).alias(
            "image_url"
        ),
        c("isPublicDomain").alias("is_public_domain"),
        pl.concat_str(pl.lit(MET_LANDING_URL), rec_id).alias("landing_url"),
        c("metadataDate").alias("modified"),
    )


def _json_text_field(expr: pl.Expr, *keys: str) -> pl.Expr:
    """An element that may be a plain string or the JSON text of ``{"<key>": ...}``."""
    is_object = expr.str.starts_with("{")
    from_object = pl.coalesce([expr.str.json_path_match(f"$.{key}") for key in keys])
    return pl.when(is_object).then(from_object).otherwise(expr)


def _smk_maker_name() -> pl.Expr:
    """``Surname, Forename`` -> ``Forename Surname``; unknown makers -> null."""
    el = pl.element()
    fore = _nonempty(el.struct.field("creator_forename")).str.strip_chars()
    sur = _nonempty(el.struct.field("creator_surname")).str.strip_chars()
    creator = _nonempty(el.struct.field("creator")).str.strip_chars()
    parts = creator.str.splitn(",", 2)
    before, after = parts.struct.field("field_0"), parts.struct.field("field_1")
    name = (
        pl.when(fore.is_not_null() & sur.is_not_null())
        .then(pl.concat_str(fore, pl.lit(" "), sur))
        .when(_nonempty(after).is_not_null())
        .then(pl.concat_str(after.str.strip_chars(), pl.lit(" "), before.str.strip_chars()))
        .otherwise(pl.coalesce(creator, sur, fore))
    )
    return _drop_unknown(name)


def _drop_unknown(name: pl.Expr) -> pl.Expr:
    return pl.when(~name.str.strip_chars().str.to_lowercase().is_in(_UNKNOWN_MAKERS)).then(name)


def _smk_stage(d: pl.DataFrame) -> pl.DataFrame:
    c = pl.col
    el = pl.element()
    empty_list = pl.lit([], dtype=pl.List(_S))

    lang = el.struct.field("language").str.strip_chars().str.to_lowercase()
    title_text = pl.coalesce(
        _nonempty(el.struct.field("title")), _nonempty(el.struct.field("translation"))
    )
    priority = (
        pl.when(title_text.is_null())
        .then(9)
        .when(lang.is_in(_ENGLISH))
        .then(0)
        .when(lang.is_in(_DANISH))
        .then(1)
        .otherwise(2)
    )
    title = c("titles").list.eval(title_text.sort_by(priority, maintain_order=True)).list.first()

    role = pl.coalesce(
        _nonempty(el.struct.field("creator_role")), _nonempty(el.struct.field("creator_qualifier"))
    )
    produced = c("production").list.eval(
        pl.struct(name=_smk_maker_name(), role=role).filter(_smk_maker_name().is_not_null())
    )
    from_artist = c("artist").list.eval(
        pl.struct(name=_drop_unknown(el), role=pl.lit(None, dtype=_S)).filter(
            _drop_unknown(el).is_not_null()
        )
    )
    makers = (
        pl.when(produced.list.len().fill_null(0) > 0)
        .then(produced)
        .when(from_artist.list.len().fill_null(0) > 0)
        .then(from_artist)
        .otherwise(pl.lit([], dtype=_MAKERS_DTYPE))
    )
    nationalities = (
        c("production")
        .list.eval(el.struct.field("creator_nationality"))
        .list.join(",", ignore_nulls=True)
        .str.split(",")
    )
    first_date = c("production_date").list.first()
    periods = c("production_date").list.eval(el.struct.field("period"))
    techniques = c("techniques").list.eval(_json_text_field(el, "technique", "name"))
    materials = c("materials").list.eval(_json_text_field(el, "material", "name"))
    medium = _nonempty(materials.list.join(", ", ignore_nulls=True))  # techniques: _smk_post
    subjects = c("content_subject").list.eval(
        _json_text_field(el, "name", "subject", "term", "title", "full_name")
    )
    persons = c("content_person").list.eval(_json_text_field(el, "full_name", "name"))
    iiif = _nonempty(c("image_iiif_id")).str.strip_chars().str.strip_chars_end("/")
    return d.select(
        "_row",
        c("object_number").str.strip_chars().alias("rec_id"),
        pl.lit(None, dtype=_S).alias("message"),
        title.alias("title"),
        makers.alias("makers"),
        nationalities.alias("nationalities"),
        _year_from_iso(first_date.struct.field("start")).alias("begin"),
        _year_from_iso(first_date.struct.field("end")).alias("end"),
        periods.alias("_periods"),
        pl.coalesce(
            _nonempty(c("responsible_department")),
            c("collection").list.eval(_nonempty(el)).list.drop_nulls().list.first(),
        ).alias("department"),
        c("object_names").list.first().struct.field("name").alias("classification"),
        c("object_names").list.first().struct.field("name").alias("object_type"),
        medium.alias("medium"),
        techniques.alias("techniques"),
        pl.lit(None, dtype=_S).alias("culture"),
        pl.concat_list(subjects.fill_null(empty_list), persons.fill_null(empty_list)).alias(
            "tags"
        ),
        pl.coalesce(
            _nonempty(c("image_thumbnail")), pl.concat_str(iiif, pl.lit(SMK_IIIF_SUFFIX))
        ).alias("image_url"),
        c("public_domain").alias("is_public_domain"),
        c("frontend_url").alias("landing_url"),
        c("modified"),
    ).with_columns(
        # date_text: the distinct periods, in order ("Ca. 1800", "Udateret", ...)
        pl.col("_periods").list.eval(_clean_text(el)).list.drop_nulls().list.unique(
            maintain_order=True
        ).list.join("; ").alias("date_text"),
    ).drop("_periods")


# ======================================================================================
# 3. Shared finishing
# ======================================================================================
def _clean_text(expr: pl.Expr) -> pl.Expr:
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


def _clean_url(expr: pl.Expr) -> pl.Expr:
    """Trimmed http(s) URL, else null (``""``, relative or malformed URLs)."""
    expr = expr.str.strip_chars()
    return pl.when(expr.str.contains(_URL_RE)).then(expr)


def _clean_list(frame: pl.DataFrame, name: str) -> pl.DataFrame:
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
        .with_columns(_clean_text(pl.col(name)).alias(name))
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


def _unescape_text(series: pl.Series) -> pl.Series:
    mask = series.str.contains(_ENTITY_RE).fill_null(False)
    if not mask.any():
        return series
    idx = mask.arg_true()
    fixed = pl.Series([html.unescape(v) for v in series.gather(idx).to_list()], dtype=pl.String)
    return series.scatter(idx, fixed)


def _unescape_list(frame: pl.DataFrame, name: str) -> pl.DataFrame:
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
        long = long.with_columns(_unescape_text(long.get_column(f)) for f in fields)
        value = pl.struct(fields)
    else:
        long = long.with_columns(_unescape_text(long.get_column(name)))
        value = pl.col(name)
    fixed = long.group_by("_row", maintain_order=True).agg(value.alias("_fixed"))
    return (
        frame.join(fixed, on="_row", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_fixed", name).alias(name))
        .drop("_fixed")
    )


def _parse_timestamp(expr: pl.Expr) -> pl.Expr:
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


def _id_failures(src: _Source) -> pl.Expr:
    """A struct (rule, reason) describing why the record's id is unusable, else null."""
    rec_id = pl.col("rec_id")
    raw_id = pl.col("source_id").str.strip_chars()
    field = src.id_field
    api_message = pl.when(pl.col("message").is_not_null()).then(
        pl.format(" (API message: {})", pl.col("message"))
    ).otherwise(pl.lit(""))
    if src.name == "met":
        malformed = ~rec_id.str.contains(r"^\d{1,12}$")
        malformed_reason = pl.format("objectID {} is not a positive integer", rec_id)
    elif src.id_pattern is not None:
        malformed = ~rec_id.str.contains(src.id_pattern) | rec_id.str.contains(r"[\x00-\x1F\x7F]")
        malformed_reason = pl.format(f"{field} {{}} does not match {src.id_pattern}", rec_id.str.slice(0, 60))
    else:
        malformed = rec_id.str.contains(r"[\x00-\x1F\x7F]") | (rec_id.str.len_chars() > 200)
        malformed_reason = pl.format("object_number {} has control characters or is too long",
                                     rec_id.str.slice(0, 60))  # fmt: skip
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


def _finish(
    src: _Source, stage: pl.DataFrame, raw: pl.DataFrame, raw_images: pl.DataFrame | None
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    failures: list[pl.DataFrame] = []
    stage = stage.join(
        raw.select("_row", "source_id", "fetched_at", "content_hash"),
        on="_row",
        how="left",
        maintain_order="left",
    )

    # --- ids -----------------------------------------------------------------------
    stage = stage.with_columns(_id_failures(src).alias("_bad"))
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
    stage = stage.with_columns(_unescape_text(stage.get_column(name)) for name in _TEXT_COLUMNS)
    for name in (*_LIST_COLUMNS, "makers"):
        stage = _unescape_list(stage, name)
    el = pl.element()
    maker = pl.struct(
        name=_clean_text(el.struct.field("name")), role=_clean_text(el.struct.field("role"))
    )
    stage = stage.with_columns(
        *(_clean_text(pl.col(name)).alias(name) for name in _TEXT_COLUMNS),
        *(_clean_url(pl.col(name)).alias(name) for name in _URL_COLUMNS),
        pl.col("makers")
        .list.eval(maker)
        .list.filter(el.struct.field("name").is_not_null())
        .list.head(MAX_LIST_ITEMS)
        .fill_null(pl.lit([], dtype=_MAKERS_DTYPE)),
    )
    for name in _LIST_COLUMNS:
        stage = _clean_list(stage, name)
    if src.name == "met":
        stage = _met_post(stage)
    elif src.name == "smk":
        stage = _smk_post(stage)  # (a collection export's staging is already final)

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
        _parse_timestamp(pl.col("modified")).alias("metadata_modified"),
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
        stage = _attach_image_hashes(stage, raw_images)
    stage, duplicates = _resolve_duplicates(stage)
    failures.append(duplicates)
    if not stage.get_column("_row").is_sorted():
        stage = stage.sort("_row")
    artworks = stage.select(pl.col(name).cast(dtype) for name, dtype in ARTWORKS_SCHEMA.items())
    return artworks, failures


def _met_post(stage: pl.DataFrame) -> pl.DataFrame:
    """Map Met department spellings onto the canonical ``/departments`` names."""
    dept = pl.col("department")
    return stage.with_columns(
        dept.str.to_lowercase()
        .replace_strict(MET_DEPARTMENT_LOOKUP, default=dept, return_dtype=pl.String)
        .alias("department")
    )


def _smk_post(stage: pl.DataFrame) -> pl.DataFrame:
    """English nationalities and culture; medium falls back to techniques; escaped URLs."""
    el = pl.element()
    nationality = el.str.to_lowercase().replace_strict(
        SMK_NATIONALITY_EN, default=el, return_dtype=pl.String
    )
    stage = stage.with_columns(
        pl.col("nationalities").list.eval(nationality).list.unique(maintain_order=True)
    ).with_columns(
        pl.when(pl.col("nationalities").list.len() > 0)
        .then(pl.col("nationalities").list.join(", "))
        .alias("culture"),
        pl.coalesce(
            "medium",
            pl.when(pl.col("techniques").list.len() > 0).then(
                pl.col("techniques").list.join(", ").str.slice(0, MAX_TEXT_CHARS)
            ),
        ).alias("medium"),
    )
    return stage.with_columns(_smk_landing_urls(stage))


def _smk_landing_urls(stage: pl.DataFrame) -> pl.Series:
    """``frontend_url`` (percent-encoded where needed) else the constructed page URL."""
    frontend = stage.get_column("landing_url")
    needs_quote = frontend.str.contains(r"[^\x21-\x7E]").fill_null(False)
    if needs_quote.any():
        idx = needs_quote.arg_true()
        fixed = [quote(u, safe=":/?#[]@!$&'()*+,;=%~") for u in frontend.gather(idx).to_list()]
        frontend = frontend.scatter(idx, pl.Series(fixed, dtype=pl.String))
    ids = stage.get_column("rec_id")
    plain = ids.str.contains(r"^[A-Za-z0-9._~-]+$").fill_null(False)
    constructed = stage.select(pl.concat_str(pl.lit(SMK_LANDING_URL), pl.col("rec_id"))).to_series()
    if (~plain).any():
        idx = (~plain).arg_true()
        fixed = [
            SMK_LANDING_URL + quote(i or "", safe="") for i in ids.gather(idx).to_list()
        ]
        constructed = constructed.scatter(idx, pl.Series(fixed, dtype=pl.String))
    return pl.select(pl.coalesce(frontend, constructed)).to_series().alias("landing_url")


def _attach_image_hashes(stage: pl.DataFrame, raw_images: pl.DataFrame) -> pl.DataFrame:
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


def _resolve_duplicates(stage: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the latest ``metadata_modified`` per ``artwork_id``; the others are quarantined.

    Ties go to the latest ``fetched_at``, then to the later raw row.
    """
    if not stage.get_column("artwork_id").is_duplicated().any():
        return stage, pl.DataFrame(schema=_FAILURE_SCHEMA)
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
            "duplicate {}: kept the record with metadata_modified {}; this one has {}{}",
            pl.col("artwork_id"),
            pl.col("_kept_mod"),
            pl.col("metadata_modified").cast(pl.String).fill_null("null"),
            pl.when(same).then(pl.lit(" (same content)")).otherwise(pl.lit(" (different content)")),
        ),
    )
    kept = ranked.filter(pl.col("_rank") == 0).drop("_rank")
    return kept, losers


def _quarantine_frame(
    source: str, raw: pl.DataFrame, failures: pl.DataFrame, quarantined_at: datetime
) -> pl.DataFrame:
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
