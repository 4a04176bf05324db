"""The record a museum client returns for one object (`FetchResult`), and upserting those
records into the `raw_objects` table.

Rules that keep stored data safe:
- a record is stored once per source id; a re-fetch with the same content hash changes nothing;
- a failed fetch (`error`) never overwrites a stored `ok` (or `gone`) record: the old text stays;
  an error row keeps the body it could not use (`raw_json`) beside its reason;
- an object the API says is gone keeps its last good text, with status `gone`;
- with a full listing, stored objects the listing no longer names become `gone`.

The fetch journal that lets a killed run resume (`FetchCheckpoint`) is a stored artefact: see
`resources/artefacts.py`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Literal

import polars as pl

Status = Literal["ok", "gone", "error"]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()  # total: any str hashes


@dataclass
class FetchResult:
    """One object fetch: the verbatim JSON text when ok, the reason otherwise (an error may
    carry the text it could not use in `raw_json`).

    Text is made storable on construction: lone surrogates (which no UTF-8 file, Parquet column
    or polars frame accepts) become `\\uXXXX` escapes, the same JSON value; `text_repairs`
    counts them plus the invalid bytes the client replaced while decoding the body.
    """

    source_id: str
    status: Status
    raw_json: str | None = None
    error: str | None = None
    modified: str | None = None
    fetched_at: datetime = field(default_factory=utc_now)
    text_repairs: int = 0

    def __post_init__(self) -> None:
        from artsim_pipeline.core.text import escape_surrogates, scrub_surrogates

        if isinstance(self.raw_json, str):
            self.raw_json, n = escape_surrogates(self.raw_json)
            self.text_repairs += n
        for name in ("source_id", "error", "modified"):
            value = getattr(self, name)
            if isinstance(value, str):
                fixed, n = scrub_surrogates(value)
                if n:
                    setattr(self, name, fixed)
                    self.text_repairs += n

    @property
    def content_hash(self) -> str | None:
        return content_hash(self.raw_json) if self.raw_json is not None else None


RAW_OBJECTS_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(),
    "raw_json": pl.String(),
    "fetched_at": pl.Datetime("us", "UTC"),
    "content_hash": pl.String(),
    "status": pl.String(),
    "error": pl.String(),
    "modified": pl.String(),
    "first_seen_at": pl.Datetime("us", "UTC"),
}


def empty_raw_objects() -> pl.DataFrame:
    return pl.DataFrame(schema=RAW_OBJECTS_SCHEMA)


@dataclass
class MergeCounts:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    gone: int = 0
    error: int = 0
    text_repairs: int = 0  # invalid bytes replaced and lone surrogates escaped in this run's texts

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def merge_results(
    previous: pl.DataFrame | None,
    results: Iterable[FetchResult],
    *,
    full_listing_ids: set[str] | None = None,
) -> tuple[pl.DataFrame, MergeCounts]:
    """Upsert `results` into `previous`; returns the new table (sorted by id) and what changed."""
    counts = MergeCounts()
    rows: dict[str, dict] = {}
    if previous is not None and previous.height:
        for row in previous.iter_rows(named=True):
            rows[row["source_id"]] = row
    seen: set[str] = set()
    for result in results:
        if result.source_id in seen:
            continue  # one result per id and run (a resumed run can meet an id twice)
        seen.add(result.source_id)
        counts.text_repairs += result.text_repairs
        old = rows.get(result.source_id)
        if result.status == "ok":
            new_hash = result.content_hash
            if old is not None and old["status"] == "ok" and old["content_hash"] == new_hash:
                counts.unchanged += 1
                continue
            if old is None or old["raw_json"] is None:
                counts.new += 1
            else:
                counts.changed += 1
            rows[result.source_id] = {
                "source_id": result.source_id,
                "raw_json": result.raw_json,
                "fetched_at": result.fetched_at,
                "content_hash": new_hash,
                "status": "ok",
                "error": None,
                "modified": result.modified,
                "first_seen_at": old["first_seen_at"] if old else result.fetched_at,
            }
        elif result.status == "gone":
            if old is None or old["status"] != "gone":
                counts.gone += 1
            rows[result.source_id] = {
                **(old or {"source_id": result.source_id, "raw_json": None, "content_hash": None, "modified": None, "first_seen_at": result.fetched_at}),
                "fetched_at": result.fetched_at,
                "status": "gone",
                "error": result.error,
            }
        else:
            counts.error += 1
            if old is not None and old["raw_json"] is not None and old["status"] != "error":
                continue  # keep what we had; the next run tries again
            rows[result.source_id] = {
                "source_id": result.source_id,
                # the text that could not be used, when the client kept it (an unparseable body)
                "raw_json": result.raw_json if result.raw_json is not None else (old or {}).get("raw_json"),
                "fetched_at": result.fetched_at,
                "content_hash": result.content_hash if result.raw_json is not None else (old or {}).get("content_hash"),
                "status": "error",
                "error": result.error,
                "modified": None,
                "first_seen_at": old["first_seen_at"] if old else result.fetched_at,
            }
    if full_listing_ids is not None:
        now = datetime.now(timezone.utc)
        for source_id, row in rows.items():
            if source_id not in full_listing_ids and row["status"] == "ok":
                counts.gone += 1
                rows[source_id] = {**row, "status": "gone", "error": "no longer listed by the API", "fetched_at": now}
    table = pl.DataFrame(list(rows.values()), schema=RAW_OBJECTS_SCHEMA) if rows else empty_raw_objects()
    return table.sort("source_id"), counts
