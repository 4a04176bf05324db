"""The staging layout every source maps its records to, and how an API source is described.

A source mapping (``core/museums/*.py``, ``core/exports/normalise.py``) produces rows with the
columns of :data:`STAGE_SCHEMA`; the shared finishing (:mod:`.assemble`) cleans them, checks
ids and row rules and assembles the ``artworks`` table. A record that cannot be staged is a
row of :data:`FAILURE_SCHEMA` (``_row``, ``rule``, ``reason``) and ends in the quarantine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

__all__ = [
    "TEXT_COLUMNS", "LIST_COLUMNS", "URL_COLUMNS", "MAKERS_DTYPE", "STAGE_SCHEMA", "FAILURE_SCHEMA", "RecordSource",
]  # fmt: skip

_S = pl.String()

#: Staging columns of free text: entities unescaped, tags and control characters stripped.
TEXT_COLUMNS = (
    "title", "date_text", "department", "classification", "object_type", "medium", "culture",
)  # fmt: skip
#: Staging columns of lists of text: each element cleaned, blanks and repeats dropped.
LIST_COLUMNS = ("techniques", "tags", "nationalities")
#: Staging columns of URLs: trimmed http(s) URLs, anything else null.
URL_COLUMNS = ("image_url", "landing_url")
#: Makers in their order on the record: a name and a role ("artist", "after", ...) each.
MAKERS_DTYPE = pl.List(pl.Struct({"name": _S, "role": _S}))
#: The staging layout a source mapping produces and the shared finishing consumes.
STAGE_SCHEMA: dict[str, pl.DataType] = {
    "_row": pl.UInt32(),
    "rec_id": _S,
    "message": _S,
    "title": _S,
    "makers": MAKERS_DTYPE,
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
#: A record that is quarantined: its raw row, the rule id and a readable reason.
FAILURE_SCHEMA: dict[str, pl.DataType] = {"_row": pl.UInt32(), "rule": _S, "reason": _S}


@dataclass(frozen=True)
class RecordSource:
    """How one source's records are decoded (the JSON fast path of :mod:`.decode`) and mapped.

    ``decode_schema`` is what the NDJSON reader projects, ``record_schema`` what a decoded
    record holds. The hooks are the source's own steps: ``stage`` maps decoded records to
    :data:`STAGE_SCHEMA`, ``post`` runs after the shared text cleaning, ``malformed_id`` says
    whether an id is malformed and why (default: ``id_pattern``, else control characters or
    over 200 characters), and ``unwrap_decoded`` / ``unwrap_record`` open an envelope the
    source wraps its records in (fast path: ``(frame, rows for the slow path)``; slow path:
    ``(record, "", "")`` or ``(None, rule, reason)``); the envelope's own field
    (``envelope_field``) is decoded by the reader, not as JSON text.
    """

    name: str
    decode_schema: dict[str, pl.DataType]
    record_schema: dict[str, pl.DataType]
    id_field: str
    id_pattern: str | None = None  # ids that do not match are quarantined (invalid_id)
    id_prefix: str | None = None  # artwork ids read <id_prefix>:<id> (default: the name)
    stage: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    post: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    malformed_id: Callable[[pl.Expr], tuple[pl.Expr, pl.Expr]] | None = None
    unwrap_decoded: Callable[[pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]] | None = None
    unwrap_record: Callable[[Any, str | None], tuple[Any, str, str]] | None = None
    envelope_field: str | None = None
