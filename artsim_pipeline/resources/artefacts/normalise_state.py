"""The state of incremental normalisation: which raw record each stored `artworks` /
`artworks_quarantine` row of a source came from (`core/normalise/incremental.py`).

Part of the storage layout: `resources/artefacts/__init__.py` has the table of keys."""

from __future__ import annotations

import polars as pl

from artsim_pipeline.resources.artefacts.versioned_parquet import read_versioned, write_versioned
from artsim_pipeline.resources.storage import ArtsimStorage

__all__ = ["UnreadableState", "read_normalise_state", "write_normalise_state"]

_VERSION_META = "artsim.normaliser_version"


class UnreadableState(ValueError):
    """The stored state is there but cannot be read (a truncated or corrupt parquet file)."""


def _key(source: str) -> str:
    return f"state/artworks/{source}.parquet"


def read_normalise_state(storage: ArtsimStorage, source: str) -> tuple[pl.DataFrame, str] | None:
    """The stored state of `source` and the normaliser version it was written under, or None.
    Raises :class:`UnreadableState` (with the key and the error) when it cannot be read."""
    return read_versioned(storage, _key(source), _VERSION_META, UnreadableState)


def write_normalise_state(storage: ArtsimStorage, source: str, state: pl.DataFrame | None, version: str) -> None:
    """Store `state` for `source` (None removes it: the stored tables then have none)."""
    if state is None:
        storage.objects.delete(_key(source))
        return
    write_versioned(storage, _key(source), state, _VERSION_META, version)
