"""Decoding ``raw_json``: the polars NDJSON fast path, and a Python slow path for what it cannot decode.

The texts are decoded by polars' NDJSON reader against an explicit, projected schema (only the
fields a source reads, :attr:`~.layout.RecordSource.decode_schema`), in chunks; fields holding
structs are read as JSON text and decoded per column with ``str.json_decode`` (half the cost).
A chunk or column that fails to decode (bad JSON, a string where a list belongs...) is split
until the offending rows are isolated. Those rows, rows without an id, and rows whose decoded
strings look like coerced non-strings (``"[..."``, ``"{..."``, ``"true"``) take the slow path:
``json.loads`` plus a schema-driven Python coercer that produces exactly the same projected row
(a test checks this on every real record) or names the quarantine rule and reason.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from typing import Any

import polars as pl

from artsim_pipeline.core.normalise.layout import FAILURE_SCHEMA, RecordSource
from artsim_pipeline.core.text import scrub_json_value

__all__ = ["decode_records", "decode_slow"]

_S = pl.String()

#: Rows per NDJSON decode call; a failing chunk costs about this many extra row decodes.
_CHUNK_ROWS = 16_384
#: A failing chunk is split into this many parts until parts are at most ``_MIN_SPLIT`` rows.
_SPLIT_WAYS = 8
_MIN_SPLIT = 64


def decode_records(src: RecordSource, raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
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
        if _has_struct(dtype) and name != src.envelope_field
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

    if src.unwrap_decoded is not None:
        fast, envelopes = src.unwrap_decoded(fast)
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
        slow_ok, slow_failed = decode_slow(src, slow_texts)
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


def _decode_one(src: RecordSource, text: str, source_id: str | None) -> tuple[dict | None, str, str]:
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
    if src.unwrap_record is not None:
        obj, rule, reason = src.unwrap_record(obj, source_id)
        if rule:
            return None, rule, reason
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


def decode_slow(src: RecordSource, texts: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode ``texts`` (``_row``, ``source_id``, ``raw_json``) one record at a time in Python:
    ``(decoded, failures)`` as :func:`decode_records` gives them."""
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
    return decoded, pl.DataFrame(failed, schema=FAILURE_SCHEMA, orient="row")


