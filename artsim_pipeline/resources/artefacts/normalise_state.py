"""The state of incremental normalisation: which raw record each stored `artworks` /
`artworks_quarantine` row of a source came from (`core/normalise/incremental.py`).

Part of the storage layout: `resources/artefacts/__init__.py` has the table of keys."""

from __future__ import annotations

import io

import polars as pl

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
    key = _key(source)
    data = storage.objects.read_bytes(key)
    if data is None:
        return None
    try:
        version = pl.read_parquet_metadata(io.BytesIO(data)).get(_VERSION_META)
        return pl.read_parquet(io.BytesIO(data)), version or ""
    except Exception as error:  # polars raises several kinds for damaged files (ComputeError, OSError...)
        raise UnreadableState(f"{key} is unreadable ({type(error).__name__}: {error})") from error


def write_normalise_state(storage: ArtsimStorage, source: str, state: pl.DataFrame | None, version: str) -> None:
    """Store `state` for `source` (None removes it: the stored tables then have none)."""
    if state is None:
        storage.objects.delete(_key(source))
        return
    buffer = io.BytesIO()
    state.write_parquet(buffer, metadata={_VERSION_META: version})
    storage.objects.write_bytes(_key(source), buffer.getvalue())
