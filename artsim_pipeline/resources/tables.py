"""Where table assets live: polars DataFrames as Parquet files, in a local directory or on S3.

Layout (a contract): `<base>/<asset key>/<partition>.parquet`, or `<base>/<asset key>.parquet`
when unpartitioned. `base` is a local directory or `s3://bucket/prefix` (read and written through
dagster-aws's S3 client; `s3_endpoint_url` points it at an S3-compatible server).
Assets that upsert into their own previous value (the raw tables) read it through `TableStore`;
everything else goes through the IO manager, which uses the same store.
"""

from __future__ import annotations

import io
from functools import cached_property
from typing import Optional

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field

from artsim_pipeline.resources.config import MergingConfig
from artsim_pipeline.resources.objects import ObjectStore, open_store


class TableStore(MergingConfig, ConfigurableResource):
    """Reads and writes the Parquet table of an asset (partition)."""

    base_dir: str = Field(description="a local directory or s3://bucket/prefix")
    s3_endpoint_url: Optional[str] = Field(default=None, description="an S3-compatible endpoint (default: AWS)")
    s3_region: Optional[str] = None

    @cached_property
    def objects(self) -> ObjectStore:
        return open_store(self.base_dir, endpoint_url=self.s3_endpoint_url, region_name=self.s3_region)

    @staticmethod
    def table_key(asset_key: str | list[str], partition_key: str | None = None) -> str:
        parts = [asset_key] if isinstance(asset_key, str) else list(asset_key)
        if partition_key is None:
            return "/".join([*parts[:-1], f"{parts[-1]}.parquet"])
        return "/".join([*parts, f"{partition_key}.parquet"])

    def table_path(self, asset_key: str | list[str], partition_key: str | None = None) -> str:
        return self.objects.uri(self.table_key(asset_key, partition_key))

    def write_table(self, df: pl.DataFrame, asset_key: str | list[str], partition_key: str | None = None) -> str:
        buffer = io.BytesIO()
        df.write_parquet(buffer)
        key = self.table_key(asset_key, partition_key)
        self.objects.write_bytes(key, buffer.getvalue())
        return self.objects.uri(key)

    def read_table(self, asset_key: str | list[str], partition_key: str | None = None) -> pl.DataFrame | None:
        """The stored table, or None when it has never been written."""
        data = self.objects.read_bytes(self.table_key(asset_key, partition_key))
        return None if data is None else pl.read_parquet(io.BytesIO(data))
