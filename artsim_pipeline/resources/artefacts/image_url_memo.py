"""The image URL memo of `raw_images`: per ok raw record of a source, the hash of its text and
its image URL, under the version of the code that made them (`core/image_manifest.py`); what
lets a run parse only the records that changed.

Part of the storage layout: `resources/artefacts/__init__.py` has the table of keys."""

from __future__ import annotations

import polars as pl

from artsim_pipeline.resources.artefacts.versioned_parquet import read_versioned, write_versioned
from artsim_pipeline.resources.storage import ArtsimStorage

__all__ = ["UnreadableUrlMemo", "read_url_memo", "write_url_memo"]

_VERSION_META = "artsim.url_memo_version"


class UnreadableUrlMemo(ValueError):
    """The stored memo is there but cannot be read (a truncated or corrupt parquet file)."""


def _key(source: str) -> str:
    return f"cache/raw_images/{source}.parquet"


def read_url_memo(storage: ArtsimStorage, source: str) -> tuple[pl.DataFrame, str] | None:
    """The stored memo of `source` and the version it was written under, or None. Raises
    :class:`UnreadableUrlMemo` (with the key and the error) when it cannot be read."""
    return read_versioned(storage, _key(source), _VERSION_META, UnreadableUrlMemo)


def write_url_memo(storage: ArtsimStorage, source: str, memo: pl.DataFrame, version: str) -> None:
    write_versioned(storage, _key(source), memo, _VERSION_META, version)
