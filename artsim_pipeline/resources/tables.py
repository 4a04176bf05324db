"""Where table assets live: polars DataFrames as Parquet files, locally or on any fsspec URL.

Layout (a contract): `<base>/<asset key>/<partition>.parquet`, or `<base>/<asset key>.parquet`
when unpartitioned. `base` is a local directory or an fsspec URL (`s3://bucket/prefix`).
Assets that upsert into their own previous value (the raw tables) read it through `TableStore`;
everything else goes through the IO manager, which uses the same store.
"""

from __future__ import annotations

import os
import uuid

import polars as pl
from dagster import ConfigurableResource
from upath import UPath


class TableStore(ConfigurableResource):
    """Reads and writes the Parquet table of an asset (partition)."""

    base_dir: str

    def table_path(self, asset_key: str | list[str], partition_key: str | None = None) -> UPath:
        parts = [asset_key] if isinstance(asset_key, str) else list(asset_key)
        base = UPath(self.base_dir)
        if partition_key is None:
            return base.joinpath(*parts[:-1], f"{parts[-1]}.parquet")
        return base.joinpath(*parts, f"{partition_key}.parquet")

    def write_table(self, df: pl.DataFrame, asset_key: str | list[str], partition_key: str | None = None) -> UPath:
        path = self.table_path(asset_key, partition_key)
        if path.protocol in ("", "file", "local"):
            # write then rename: a crash never leaves half a Parquet file where the old one was
            local = str(path.path if hasattr(path, "path") else path)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            tmp = f"{local}.{uuid.uuid4().hex}.tmp"
            df.write_parquet(tmp)
            os.replace(tmp, local)
        else:
            with path.open("wb") as handle:
                df.write_parquet(handle)
        return path

    def read_table(self, asset_key: str | list[str], partition_key: str | None = None) -> pl.DataFrame | None:
        """The stored table, or None when it has never been written."""
        path = self.table_path(asset_key, partition_key)
        if not path.exists():
            return None
        with path.open("rb") as handle:
            return pl.read_parquet(handle)
