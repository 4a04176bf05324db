"""A Parquet file in the storage that carries the version of the code that made it in its
metadata: the normalisation state and the image URL memo are kept this way."""

from __future__ import annotations

import io

import polars as pl

from artsim_pipeline.resources.storage import ArtsimStorage

__all__: list[str] = []  # helpers of the artefact modules, not re-exported


def read_versioned(storage: ArtsimStorage, key: str, version_meta: str,
                   unreadable: type[Exception]) -> tuple[pl.DataFrame, str] | None:
    """The frame stored at `key` and its version ("" when it has none), or None when nothing is
    stored; raises `unreadable` (with the key and the error) when the file cannot be read."""
    data = storage.objects.read_bytes(key)
    if data is None:
        return None
    try:
        version = pl.read_parquet_metadata(io.BytesIO(data)).get(version_meta)
        return pl.read_parquet(io.BytesIO(data)), version or ""
    except Exception as error:  # polars raises several kinds for damaged files (ComputeError, OSError...)
        raise unreadable(f"{key} is unreadable ({type(error).__name__}: {error})") from error


def write_versioned(storage: ArtsimStorage, key: str, frame: pl.DataFrame, version_meta: str, version: str) -> None:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, metadata={version_meta: version})
    storage.objects.write_bytes(key, buffer.getvalue())
