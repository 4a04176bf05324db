"""The record a museum client returns for one object (`FetchResult`), and upserting those
records into the `raw_objects` table.

Rules that keep stored data safe:
- a record is stored once per source id; a re-fetch with the same content hash changes nothing;
- a failed fetch (`error`) never overwrites a stored `ok` (or `gone`) record: the old text stays;
  an error row keeps the body it could not use (`raw_json`) beside its reason;
- an object the API says is gone keeps its last good text, with status `gone`;
- with a full listing, stored objects the listing no longer names become `gone`.

`merge_changes` gives only the rows a run changes (what the stored table's upsert writes);
`merge_results` the whole new table.

The fetch journal that lets a killed run resume (`FetchCheckpoint`) is a stored artefact: see
`resources/artefacts/`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Literal, Sequence

import polars as pl

Status = Literal["ok", "gone", "error"]
DELETED_COLUMN = "_artsim_deleted"  # in a delta of an upserted table: this key's row is removed


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


def latest_rows(frames: Sequence[pl.DataFrame], key: Sequence[str]) -> pl.DataFrame:
    """Merge-on-read of an upserted table: `frames` oldest first (a base, then its deltas); the
    last row of each key wins, keys whose last row is marked deleted (`DELETED_COLUMN`) are
    dropped; sorted by the key, in the first frame's columns and types."""
    key = list(key)
    first = frames[0]
    marked = [f if DELETED_COLUMN in f.columns else f.with_columns(pl.lit(False).alias(DELETED_COLUMN)) for f in frames]
    merged = pl.concat(marked, how="diagonal_relaxed") if len(marked) > 1 else marked[0]
    merged = merged.unique(subset=key, keep="last", maintain_order=True)
    merged = merged.filter(~pl.col(DELETED_COLUMN).fill_null(False)).drop(DELETED_COLUMN).sort(key)
    columns = [c for c in first.columns if c != DELETED_COLUMN]
    merged = merged.select(*columns, *(c for c in merged.columns if c not in columns))
    return merged.cast({c: t for c, t in first.schema.items() if c in columns and merged.schema[c] != t})


_RESULT_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(), "r_status": pl.String(), "r_raw_json": pl.String(), "r_error": pl.String(),
    "r_modified": pl.String(), "r_fetched_at": pl.Datetime("us", "UTC"), "r_hash": pl.String(),
}


def _results_frame(results: Iterable[FetchResult]) -> tuple[pl.DataFrame, int]:
    """One row per source id (its first result: a resumed run can meet an id twice) and the
    run's text repairs."""
    columns: dict[str, list] = {name: [] for name in _RESULT_SCHEMA}
    seen: set[str] = set()
    repairs = 0
    for result in results:
        if result.source_id in seen:
            continue
        seen.add(result.source_id)
        repairs += result.text_repairs
        for name, value in zip(columns, (result.source_id, result.status, result.raw_json, result.error, result.modified,
                                         result.fetched_at, result.content_hash), strict=True):
            columns[name].append(value)
    return pl.DataFrame(columns, schema=_RESULT_SCHEMA), repairs


def merge_changes(
    previous: pl.DataFrame | None,
    results: Iterable[FetchResult],
    *,
    full_listing_ids: set[str] | None = None,
) -> tuple[pl.DataFrame, MergeCounts]:
    """The rows of `previous` that `results` change (new, changed, gone, error rows, whole),
    and the counts: what an upsert of the stored table needs, O(k) rows for k results.

    Vectorised: the results are joined to the stored rows on `source_id`, and a result whose
    `content_hash` equals the stored ok row's is unchanged (no row)."""
    counts = MergeCounts()
    res, counts.text_repairs = _results_frame(results)
    stored = previous.select(list(RAW_OBJECTS_SCHEMA)) if previous is not None and previous.height else empty_raw_objects()
    old = stored.rename({c: f"old_{c}" for c in RAW_OBJECTS_SCHEMA if c != "source_id"}).with_columns(old_exists=pl.lit(True))
    joined = res.join(old, on="source_id", how="left").with_columns(pl.col("old_exists").fill_null(False))

    status, exists, old_status = pl.col("r_status"), pl.col("old_exists"), pl.col("old_status")
    had_text = exists & pl.col("old_raw_json").is_not_null()
    unchanged = (status == "ok") & exists & (old_status == "ok") & (pl.col("old_content_hash") == pl.col("r_hash"))
    keeps_old = (status == "error") & had_text & (old_status != "error")  # a failure never overwrites a good record
    flags = joined.select(
        unchanged=unchanged.fill_null(False),
        new=((status == "ok") & ~unchanged.fill_null(False) & ~had_text),
        changed=((status == "ok") & ~unchanged.fill_null(False) & had_text),
        gone=((status == "gone") & (~exists | (old_status != "gone")).fill_null(True)),
        error=(status == "error"),
        keep=~(unchanged.fill_null(False) | keeps_old.fill_null(False)),
    )
    counts.unchanged, counts.new, counts.changed, counts.gone, counts.error = (
        int(flags[c].sum()) for c in ("unchanged", "new", "changed", "gone", "error"))

    first_seen = pl.when(exists).then(pl.col("old_first_seen_at")).otherwise(pl.col("r_fetched_at"))
    is_ok, is_gone = status == "ok", status == "gone"
    changes = joined.filter(flags["keep"]).select(
        "source_id",
        raw_json=pl.when(is_ok).then(pl.col("r_raw_json")).when(is_gone).then(pl.col("old_raw_json"))
        .otherwise(pl.coalesce("r_raw_json", "old_raw_json")),
        fetched_at=pl.col("r_fetched_at"),
        content_hash=pl.when(is_ok).then(pl.col("r_hash")).when(is_gone).then(pl.col("old_content_hash"))
        .otherwise(pl.coalesce("r_hash", "old_content_hash")),
        status=status,
        error=pl.when(is_ok).then(pl.lit(None, pl.String())).otherwise(pl.col("r_error")),
        modified=pl.when(is_ok).then(pl.col("r_modified")).when(is_gone).then(pl.col("old_modified"))
        .otherwise(pl.lit(None, pl.String())),
        first_seen_at=first_seen,
    )
    if full_listing_ids is not None:
        changes = _mark_unlisted_gone(stored, changes, full_listing_ids, counts)
    return changes.cast(RAW_OBJECTS_SCHEMA), counts


def _mark_unlisted_gone(stored: pl.DataFrame, changes: pl.DataFrame, listed_ids: set[str], counts: MergeCounts) -> pl.DataFrame:
    """With a full listing, every ok record the listing no longer names becomes `gone`."""
    listed = pl.Series("listed", list(listed_ids), dtype=pl.String())
    untouched = stored.join(changes.select("source_id"), on="source_id", how="anti")
    unlisted = (pl.col("status") == "ok") & ~pl.col("source_id").is_in(listed)
    gone = {"status": pl.lit("gone"), "error": pl.lit("no longer listed by the API"), "fetched_at": pl.lit(utc_now(), pl.Datetime("us", "UTC"))}
    vanished = untouched.filter(unlisted).with_columns(**gone)
    counts.gone += vanished.height + int(changes.select(unlisted.sum()).item())
    changes = changes.with_columns(**{name: pl.when(unlisted).then(value).otherwise(pl.col(name)) for name, value in gone.items()})
    return pl.concat([changes, vanished.select(changes.columns)])


def merge_results(
    previous: pl.DataFrame | None,
    results: Iterable[FetchResult],
    *,
    full_listing_ids: set[str] | None = None,
) -> tuple[pl.DataFrame, MergeCounts]:
    """Upsert `results` into `previous`; returns the new table (sorted by id) and what changed."""
    changes, counts = merge_changes(previous, results, full_listing_ids=full_listing_ids)
    return apply_changes(previous, changes), counts


def apply_changes(previous: pl.DataFrame | None, changes: pl.DataFrame) -> pl.DataFrame:
    """The `raw_objects` table after upserting the rows `merge_changes` gave (sorted by id)."""
    stored = previous.select(list(RAW_OBJECTS_SCHEMA)) if previous is not None and previous.height else empty_raw_objects()
    return latest_rows([stored.cast(RAW_OBJECTS_SCHEMA), changes], ["source_id"])
