"""Upserting fetch results into the `raw_objects` table, and the crash checkpoint that feeds it.

Rules that keep stored data safe:
- a record is stored once per source id; a re-fetch with the same content hash changes nothing;
- a failed fetch (`error`) never overwrites a stored `ok` (or `gone`) record: the old text stays;
  an error row keeps the body it could not use (`raw_json`) beside its reason;
- an object the API says is gone keeps its last good text, with status `gone`;
- with a full listing, stored objects the listing no longer names become `gone`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import polars as pl

from artsim_pipeline.resources.clients.base import FetchResult

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


class FetchCheckpoint:
    """An append-only JSON-lines journal of fetch results, so a killed run resumes where it stopped.

    Each result is flushed as soon as it arrives. On the next run, entries that already reached
    the stored table are dropped (`compact`) and the rest are reused instead of fetched again.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = None

    def load(self) -> list[FetchResult]:
        if not self.path.exists():
            return []
        results = []
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    entry = json.loads(line.decode("utf-8"))
                    entry["fetched_at"] = datetime.fromisoformat(entry["fetched_at"])
                    results.append(FetchResult(**entry))
                except (ValueError, TypeError, KeyError, RecursionError):
                    continue  # a line cut short by the crash (or damaged): that fetch is simply redone
        return results

    def compact(self, stored: pl.DataFrame | None) -> list[FetchResult]:
        """Keep only results worth reusing that the stored table does not hold yet; returns them.

        `ok` and `gone` answers are final and reused; `error` answers are dropped so that the
        resumed run tries those objects again.
        """
        stored_keys: set[tuple[str, str | None]] = set()
        if stored is not None and stored.height:
            for source_id, status, digest in stored.select("source_id", "status", "content_hash").iter_rows():
                stored_keys.add((source_id, digest if status == "ok" else status))
        pending = []
        for result in self.load():
            key = (result.source_id, result.content_hash if result.status == "ok" else result.status)
            if result.status != "error" and key not in stored_keys:
                pending.append(result)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for result in pending:
                handle.write(self._line(result))
        os.replace(tmp, self.path)
        return pending

    @staticmethod
    def _line(result: FetchResult) -> str:
        entry = dict(result.__dict__)
        entry["fetched_at"] = result.fetched_at.isoformat()
        return json.dumps(entry, ensure_ascii=True) + "\n"  # ASCII: any text round-trips, whatever it holds

    def append(self, result: FetchResult) -> None:
        if self._handle is None:
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(self._line(result))
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
