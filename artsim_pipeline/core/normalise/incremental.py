"""Incremental normalisation: only the raw records that are new or changed since the stored
``artworks`` / ``artworks_quarantine`` were made are normalised again; the stored rows of the
others are reused and the rows of records no longer ok are dropped.

The result is exactly the full normalisation's (same rows, same order; ``quarantined_at`` is
this run's for every quarantine row, as a full pass stamps it), which
``artsim_pipeline_tests/core/test_normalise_incremental.py`` checks on real records of every
source, poisoned copies included.

What ties a stored row to its raw record is the *state* (:data:`STATE_SCHEMA`): one row per ok
raw record, in raw order (the order of both tables), with the record's ``source_id``, a hash of
its ``source_id`` and ``raw_json`` (``raw_key``), whether it is an artwork or quarantined, and
the hash of the row it became (``row_hash``, so stored tables that are not the ones the state
describes are noticed). It is kept under a *version* (:func:`normaliser_version`): the
normaliser's code, the schemas, the polars version the hashes come from, the source and its
export mapping.

Why records can be normalised apart: every step of normalisation is per record except two.
Image hashes come from ``raw_images`` by ``source_id`` and ``image_url``: they are attached
again to every reused row (a polars join). Duplicate ids are resolved across records
(:func:`.quarantine.resolve_duplicates`): reuse is exact only when no duplicate is involved, so
a kept ``duplicate_id`` loser, a loser among the re-normalised records or a re-normalised
artwork id equal to a kept one's means a full pass.

A full pass also runs (``mode == "full"``, with the reason) when there is no usable state, when
ok raw records have a null or repeated ``source_id``, or when more than ``max_fresh_fraction``
of the records changed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import polars as pl

from artsim_pipeline.core.code_version import code_fingerprint
from artsim_pipeline.core.normalise.assemble import attach_image_hashes, ok_rows
from artsim_pipeline.core.normalise.quarantine import is_cross_row_duplicate
from artsim_pipeline.core.schema import ARTWORKS_SCHEMA, QUARANTINE_SCHEMA, UTC_DATETIME

__all__ = [
    "NORMALISER_VERSION", "STATE_SCHEMA", "FULL", "INCREMENTAL", "Stored", "Normalised",
    "normaliser_version", "normalise_incremental",
]  # fmt: skip

#: Bump when what a record becomes changes in a way the code fingerprint cannot see (data the
#: normalisers read from outside their modules).
NORMALISER_VERSION = "1"
FULL, INCREMENTAL = "full", "incremental"
#: Above this share of changed records a full pass costs about what reuse does.
MAX_FRESH_FRACTION = 0.5

STATE_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String(),
    "raw_key": pl.UInt64(),
    "in_artworks": pl.Boolean(),
    "row_hash": pl.UInt64(),
}

#: The modules whose code decides what a record becomes (their functions' code and constants
#: enter the version, so an edit to any of them means a full pass).
_NORMALISER_MODULES = (
    "artsim_pipeline.core.normalise", "artsim_pipeline.core.normalise.assemble",
    "artsim_pipeline.core.normalise.decode", "artsim_pipeline.core.normalise.fields",
    "artsim_pipeline.core.normalise.layout", "artsim_pipeline.core.normalise.quarantine",
    "artsim_pipeline.core.museums", "artsim_pipeline.core.museums.met", "artsim_pipeline.core.museums.smk",
    "artsim_pipeline.core.museums.aic", "artsim_pipeline.core.museums.cma",
    "artsim_pipeline.core.exports.normalise", "artsim_pipeline.core.exports.makers",
    "artsim_pipeline.core.exports.text", "artsim_pipeline.core.exports.mapping",
    "artsim_pipeline.core.names", "artsim_pipeline.core.text", "artsim_pipeline.core.dates",
    "artsim_pipeline.core.schema", "artsim_pipeline.core.expectations", "artsim_pipeline.core.sources",
)  # fmt: skip


@dataclass(frozen=True)
class Stored:
    """What the last run left: the stored tables (None when never written) and the state it
    wrote beside them, under its version; ``problem`` says why a stored state could not be read
    (then a full pass runs, with that reason)."""

    artworks: pl.DataFrame | None
    quarantine: pl.DataFrame | None
    state: pl.DataFrame | None
    version: str | None
    problem: str | None = None


@dataclass(frozen=True)
class Normalised:
    """``(artworks, quarantine)`` plus the state to store beside them (None when the records
    cannot be tied to their rows: null or repeated ``source_id``), how they were made and why."""

    artworks: pl.DataFrame
    quarantine: pl.DataFrame
    state: pl.DataFrame | None
    version: str
    mode: str
    reason: str
    renormalised: int
    reused: int


def normaliser_version(source: str, export: Any = None) -> str:
    """The version a stored state must carry to be reused for ``source`` (and its export mapping)."""
    # field by field (a repr would write its frozensets in this process's hash order)
    mapping = code_fingerprint(export) if export is not None else "-"
    return f"{NORMALISER_VERSION}|{source}|{mapping}|polars {pl.__version__}|code {_code_fingerprint()}"


def normalise_incremental(
    source: str,
    raw_objects: pl.DataFrame,
    raw_images: pl.DataFrame | None = None,
    *,
    export: Any = None,
    stored: Stored | None = None,
    quarantined_at: datetime | None = None,
    max_fresh_fraction: float = MAX_FRESH_FRACTION,
    normaliser: Callable[..., tuple[pl.DataFrame, pl.DataFrame]] | None = None,
) -> Normalised:
    """:func:`~artsim_pipeline.core.normalise.normalise` (or ``normaliser``, its signature) of
    ``raw_objects``, reusing the ``stored`` rows of the records that did not change when that is
    exact (see the module)."""
    if normaliser is None:
        from artsim_pipeline.core.normalise import normalise as normaliser
    version = normaliser_version(source, export)
    stamp = quarantined_at or datetime.now(UTC)
    raw = ok_rows(raw_objects)
    raw = raw.with_columns(raw.select("source_id", "raw_json").hash_rows(seed=0).alias("_key"))

    def full(reason: str) -> Normalised:
        artworks, quarantine = normaliser(source, raw_objects, raw_images, export=export)
        quarantine = _stamped(quarantine, stamp)
        state = _state(raw, artworks, quarantine)
        return Normalised(artworks, quarantine, state, version, FULL, reason, raw.height, 0)

    reason = _unusable(stored, version, raw)
    if reason:
        return full(reason)
    assert stored is not None and stored.state is not None  # checked by _unusable
    matched = _match(raw, stored.state)
    fresh = matched.filter(~pl.col("_kept"))
    if fresh.height > max_fresh_fraction * raw.height:
        return full(f"{fresh.height} of {raw.height} records are new or changed")
    kept_art = matched.filter(pl.col("_kept") & pl.col("_in_artworks"))
    kept_quarantine = matched.filter(pl.col("_kept") & ~pl.col("_in_artworks"))
    reused_quarantine = _gather(stored.quarantine, kept_quarantine["_index"])
    if reused_quarantine.select(is_cross_row_duplicate(pl.col("rule"), pl.col("reason")).any()).item():
        return full("a kept record is a duplicate_id loser (duplicates are resolved across records)")

    subset = fresh.select("source_id", "raw_json", "content_hash", "fetched_at", status=pl.lit("ok"))
    new_art, new_quarantine = normaliser(source, subset, raw_images, export=export)
    reused_art = _gather(stored.artworks, kept_art["_index"])
    if new_quarantine.select(is_cross_row_duplicate(pl.col("rule"), pl.col("reason")).any()).item():
        return full("re-normalised records hold a duplicate id")
    if new_art.select(pl.col("artwork_id").is_in(reused_art["artwork_id"].implode()).any()).item():
        return full("a re-normalised record has the artwork id of a kept one")

    # the re-normalised records' rows back to their raw positions: the quarantined ones by
    # source_id (unique), the others are the artworks, both in raw order
    in_quarantine = fresh.select(pl.col("source_id").is_in(new_quarantine["source_id"].implode())).to_series()
    new_art_rows, new_quarantine_rows = fresh.filter(~in_quarantine)["_row"], fresh.filter(in_quarantine)["_row"]
    if new_art_rows.len() != new_art.height or new_quarantine_rows.len() != new_quarantine.height:
        return full("re-normalised records did not map one to one onto their rows")
    new_quarantine = new_quarantine.join(
        fresh.select("source_id", "_row"), on="source_id", how="left", maintain_order="left"
    )
    artworks = (
        pl.concat([
            _with_images(reused_art, raw_images).with_columns(kept_art["_row"]),
            new_art.with_columns(new_art_rows),
        ])
        .sort("_row")
        .drop("_row")
    )
    quarantine = _stamped(
        pl.concat([reused_quarantine.with_columns(kept_quarantine["_row"]), new_quarantine]).sort("_row").drop("_row"),
        stamp,
    )
    assert artworks.height + quarantine.height == raw.height, "incremental normalise lost or duplicated rows"
    return Normalised(
        artworks, quarantine, _state(raw, artworks, quarantine), version, INCREMENTAL,
        f"{fresh.height} of {raw.height} records new or changed", fresh.height, kept_art.height + kept_quarantine.height,
    )  # fmt: skip


def _unusable(stored: Stored | None, version: str, raw: pl.DataFrame) -> str:
    """Why the stored state cannot be reused ('' when it can)."""
    if stored is not None and stored.problem:
        return stored.problem
    if stored is None or stored.state is None or stored.artworks is None or stored.quarantine is None:
        return "no stored state"
    if stored.version != version:
        return "the normaliser changed since the stored tables were made"
    if stored.state.schema != pl.Schema(STATE_SCHEMA):
        return "the stored state has another schema"
    if raw.height == 0:
        return "no ok records"
    ids = raw.get_column("source_id")
    if ids.null_count() or ids.is_duplicated().any():
        return "ok records with a null or repeated source_id"
    state = stored.state
    in_artworks = state.get_column("in_artworks")
    if (
        in_artworks.sum() != stored.artworks.height
        or state.height - in_artworks.sum() != stored.quarantine.height
        or stored.artworks.schema != pl.Schema(ARTWORKS_SCHEMA)
        or stored.quarantine.schema != pl.Schema(QUARANTINE_SCHEMA)
    ):
        return "the stored tables are not the ones the state describes"
    hashes = state.get_column("row_hash")
    if not (
        hashes.filter(in_artworks).equals(stored.artworks.hash_rows(seed=0), check_names=False)
        and hashes.filter(~in_artworks).equals(stored.quarantine.hash_rows(seed=0), check_names=False)
    ):
        return "the stored tables are not the ones the state describes"
    return ""


def _match(raw: pl.DataFrame, state: pl.DataFrame) -> pl.DataFrame:
    """The ok raw rows with ``_kept`` (same record as stored), ``_in_artworks`` and ``_index``
    (the stored row's position in its table)."""
    in_artworks = pl.col("in_artworks")
    indexed = state.select(
        "source_id",
        pl.col("raw_key").alias("_stored_key"),
        in_artworks.alias("_in_artworks"),
        pl.when(in_artworks)
        .then(in_artworks.cum_sum() - 1)
        .otherwise((~in_artworks).cum_sum() - 1)
        .cast(pl.Int64)
        .alias("_index"),
    )
    return raw.join(indexed, on="source_id", how="left", maintain_order="left").with_columns(
        (pl.col("_stored_key") == pl.col("_key")).fill_null(False).alias("_kept")
    )


def _gather(frame: pl.DataFrame, index: pl.Series) -> pl.DataFrame:
    return frame.select(pl.all().gather(index))


def _with_images(artworks: pl.DataFrame, raw_images: pl.DataFrame | None) -> pl.DataFrame:
    """Reused rows with ``image_sha256`` from the current ``raw_images``, as a full pass attaches it."""
    rows = artworks.with_columns(pl.lit(None, dtype=pl.String).alias("image_sha256"))
    if raw_images is not None:
        rows = attach_image_hashes(rows, raw_images)
    return rows.select(pl.col(name).cast(dtype) for name, dtype in ARTWORKS_SCHEMA.items())


def _stamped(quarantine: pl.DataFrame, stamp: datetime) -> pl.DataFrame:
    return quarantine.with_columns(pl.lit(stamp).cast(UTC_DATETIME).alias("quarantined_at"))


def _state(raw: pl.DataFrame, artworks: pl.DataFrame, quarantine: pl.DataFrame) -> pl.DataFrame | None:
    """One row per ok raw record (raw order): its key, its table and its row's hash."""
    ids = raw.get_column("source_id")
    if ids.null_count() or ids.is_duplicated().any():
        return None
    in_artworks = ~ids.is_in(quarantine.get_column("source_id").implode())
    if in_artworks.sum() != artworks.height:
        return None
    row_hash = pl.Series("row_hash", [None] * raw.height, dtype=pl.UInt64)
    row_hash = row_hash.scatter(in_artworks.arg_true(), artworks.hash_rows(seed=0))
    row_hash = row_hash.scatter((~in_artworks).arg_true(), quarantine.hash_rows(seed=0))
    return pl.DataFrame(
        [ids, raw.get_column("_key").alias("raw_key"), in_artworks.alias("in_artworks"), row_hash]
    ).cast(STATE_SCHEMA)


# -- the normaliser's code, as a version ---------------------------------------------------------


@cache
def _code_fingerprint() -> str:
    """:func:`~artsim_pipeline.core.code_version.code_fingerprint` of :data:`_NORMALISER_MODULES`
    (same in every process; cached: code does not change while a process runs)."""
    return code_fingerprint(*(importlib.import_module(name) for name in _NORMALISER_MODULES))
