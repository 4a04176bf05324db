"""Where table assets live: polars DataFrames as Parquet files, in a local directory or on S3.

Layout (a contract): `<base>/<asset key>/<partition>.parquet`, or `<base>/<asset key>.parquet`
when unpartitioned. `base` is a local directory or `s3://bucket/prefix` (read and written through
dagster-aws's S3 client; `s3_endpoint_url` points it at an S3-compatible server).
Assets that upsert into their own previous value (the raw tables) read it through `TableStore`;
everything else goes through the IO manager, which uses the same store.

Tables that grow by appending (`raw_objects`, `raw_images`: a run that touches k of N records
writes O(k), not O(N)) are upserted (`upsert_table`, or an asset returning a `TableUpsert`):

- the *base* is the compacted table at the contract path above, sorted by its key; its Parquet
  key-value metadata names the key (`artsim.upsert_key`), its row count and the last delta it
  already holds (`artsim.covers`);
- each upsert adds one *delta* beside it, `<table>.deltas/<seq:010d>-<rows>.parquet`: whole rows
  of the table plus `_artsim_deleted` (a deleted key is a row with it set);
- reading merges on read: the base, then the deltas numbered above `covers` in order, the last
  row of each key wins, deleted keys are dropped, sorted by the key;
- when the deltas' rows pass `compact_fraction` of the base (or there are `max_deltas` of
  them) the merged table becomes the new base (whose `covers` names the last delta), then the
  deltas it holds are removed. Writes are therefore amortised O(k). A crash between the two
  steps leaves deltas at or below `covers`, which reads ignore and the next compaction removes;
  a crash before the base is replaced leaves the old base and the deltas: nothing is lost.

A plain `write_table` (a whole new value) replaces the base and covers every delta there is.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Optional, Sequence

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field

from artsim_pipeline.core.raw_store import DELETED_COLUMN, latest_rows
from artsim_pipeline.resources.config import MergingConfig
from artsim_pipeline.resources.objects import ObjectStore, open_store

UPSERT_KEY_META = "artsim.upsert_key"
COVERS_META = "artsim.covers"
ROWS_META = "artsim.rows"
DELTA_NAME = re.compile(r"(\d{10})-(\d+)\.parquet$")
FOOTER_BYTES = 1 << 16  # enough for the footer of a table of a few dozen columns


@dataclass(frozen=True)
class TableUpsert:
    """What an asset returns to store only the rows a run changed: `rows` (whole rows, replacing
    the stored ones with the same `key`) and `deleted` (the key columns of rows to remove).

    `total_rows` is the table's size after the upsert (reported as `rows`); `after_write` runs
    once the rows are stored (e.g. clearing the fetch journal they came from)."""

    rows: pl.DataFrame
    key: tuple[str, ...]
    deleted: pl.DataFrame | None = None
    total_rows: int | None = None
    after_write: Callable[[], None] | None = None


@dataclass(frozen=True)
class UpsertReport:
    uri: str
    rows_written: int
    bytes_written: int
    compacted: bool
    deltas: int  # deltas the table has after this write


@dataclass(frozen=True)
class _BaseInfo:
    key: tuple[str, ...] | None
    covers: int
    rows: int


class TableStore(MergingConfig, ConfigurableResource):
    """Reads and writes the Parquet table of an asset (partition)."""

    base_dir: str = Field(description="a local directory or s3://bucket/prefix")
    s3_endpoint_url: Optional[str] = Field(default=None, description="an S3-compatible endpoint (default: AWS)")
    s3_region: Optional[str] = None
    compact_fraction: float = Field(default=0.25, description="upserted tables: compact when the deltas' rows pass this share of the base")
    max_deltas: int = Field(default=32, description="upserted tables: compact when there are this many deltas")

    @cached_property
    def objects(self) -> ObjectStore:
        return open_store(self.base_dir, endpoint_url=self.s3_endpoint_url, region_name=self.s3_region)

    @staticmethod
    def table_key(asset_key: str | list[str], partition_key: str | None = None) -> str:
        parts = [asset_key] if isinstance(asset_key, str) else list(asset_key)
        if partition_key is None:
            return "/".join([*parts[:-1], f"{parts[-1]}.parquet"])
        return "/".join([*parts, f"{partition_key}.parquet"])

    @classmethod
    def deltas_prefix(cls, asset_key: str | list[str], partition_key: str | None = None) -> str:
        return cls.table_key(asset_key, partition_key).removesuffix(".parquet") + ".deltas"

    def table_path(self, asset_key: str | list[str], partition_key: str | None = None) -> str:
        return self.objects.uri(self.table_key(asset_key, partition_key))

    # -- whole tables -----------------------------------------------------------------------------

    def write_table(self, df: pl.DataFrame, asset_key: str | list[str], partition_key: str | None = None) -> str:
        deltas = self._deltas(asset_key, partition_key)
        covers = max((seq for seq, _, _ in deltas), default=0)
        key = self.table_key(asset_key, partition_key)
        self.objects.write_bytes(key, self._parquet(df, covers=covers) if deltas else self._parquet(df))
        self._remove_deltas(deltas, covers)
        return self.objects.uri(key)

    def read_table(self, asset_key: str | list[str], partition_key: str | None = None) -> pl.DataFrame | None:
        """The stored table (an upserted one merged with its deltas), or None when it has never
        been written."""
        for _ in range(3):
            data = self.objects.read_bytes(self.table_key(asset_key, partition_key))
            if data is None:
                return None
            base = pl.read_parquet(io.BytesIO(data))
            info = self._info(pl.read_parquet_metadata(io.BytesIO(data)))
            if info.key is None:
                return base
            live = [d for d in self._deltas(asset_key, partition_key) if d[0] > info.covers]
            deltas = [self.objects.read_bytes(k) for _, _, k in live]
            # a compaction that wrote a new base between reading this one and listing the deltas
            # removed them (or some): the base read is then stale, so read again
            now = self._base_info(self.table_key(asset_key, partition_key))
            if all(d is not None for d in deltas) and now is not None and now.covers == info.covers:
                if not live:
                    return base
                return latest_rows([base, *(pl.read_parquet(io.BytesIO(d)) for d in deltas)], info.key)
        raise RuntimeError(f"{self.table_path(asset_key, partition_key)} kept changing while it was read")

    # -- upserted tables ---------------------------------------------------------------------------

    def upsert_table(self, rows: pl.DataFrame, key: Sequence[str], asset_key: str | list[str], partition_key: str | None = None,
                     *, deleted: pl.DataFrame | None = None) -> UpsertReport:
        """Store `rows` over the rows with the same `key` and remove the `deleted` keys, writing
        one delta of their size (or, when the deltas pass the compaction threshold, the merged
        table as the new base)."""
        key = tuple(key)
        table_key = self.table_key(asset_key, partition_key)
        change = _as_delta(rows, deleted, key)
        info = self._base_info(table_key)
        deltas = self._deltas(asset_key, partition_key)
        if info is not None and change.height == 0:
            live = sum(1 for d in deltas if d[0] > info.covers)
            return UpsertReport(self.objects.uri(table_key), 0, 0, False, live)
        live = [d for d in deltas if info is not None and d[0] > info.covers]
        delta_rows = sum(n for _, n, _ in live) + change.height
        compact = (info is None or info.key != key or len(live) + 1 >= self.max_deltas
                   or delta_rows > self.compact_fraction * max(info.rows, 1))
        if not compact:
            seq = max([info.covers, *(seq for seq, _, _ in deltas)]) + 1
            data = self._parquet(change)
            self.objects.write_bytes(f"{self.deltas_prefix(asset_key, partition_key)}/{seq:010d}-{change.height}.parquet", data)
            return UpsertReport(self.objects.uri(table_key), change.height, len(data), False, len(live) + 1)
        current = self.read_table(asset_key, partition_key)
        frames = [current] if current is not None else []
        merged = latest_rows([*frames, change], key)
        covers = max((seq for seq, _, _ in deltas), default=0)
        data = self._parquet(merged, key=key, covers=covers)
        self.objects.write_bytes(table_key, data)
        self._remove_deltas(deltas, covers)
        return UpsertReport(self.objects.uri(table_key), merged.height, len(data), True, 0)

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _parquet(df: pl.DataFrame, *, key: tuple[str, ...] | None = None, covers: int | None = None) -> bytes:
        metadata = {}
        if key is not None:
            metadata = {UPSERT_KEY_META: ",".join(key), ROWS_META: str(df.height)}
        if covers is not None:
            metadata[COVERS_META] = str(covers)
        buffer = io.BytesIO()
        df.write_parquet(buffer, metadata=metadata or None)
        return buffer.getvalue()

    @staticmethod
    def _info(metadata: dict[str, str]) -> _BaseInfo:
        key = metadata.get(UPSERT_KEY_META)
        return _BaseInfo(tuple(key.split(",")) if key else None, int(metadata.get(COVERS_META, 0)), int(metadata.get(ROWS_META, 0)))

    def _base_info(self, table_key: str) -> _BaseInfo | None:
        """The base's key, covered delta and rows from its footer (a ranged read on S3)."""
        tail = self.objects.read_tail(table_key, FOOTER_BYTES)
        if tail is None:
            return None
        try:
            return self._info(pl.read_parquet_metadata(io.BytesIO(tail)))
        except Exception:  # noqa: BLE001 - a footer longer than the tail: read the whole file
            data = self.objects.read_bytes(table_key)
            return None if data is None else self._info(pl.read_parquet_metadata(io.BytesIO(data)))

    def _deltas(self, asset_key: str | list[str], partition_key: str | None) -> list[tuple[int, int, str]]:
        """(sequence number, rows, key) of every delta file of the table, oldest first."""
        found = []
        for item in self.objects.list_keys(self.deltas_prefix(asset_key, partition_key)):
            match = DELTA_NAME.search(item)
            if match:
                found.append((int(match.group(1)), int(match.group(2)), item))
        return sorted(found)

    def _remove_deltas(self, deltas: list[tuple[int, int, str]], covers: int) -> None:
        for seq, _, key in deltas:
            if seq <= covers:
                self.objects.delete(key)


def _as_delta(rows: pl.DataFrame, deleted: pl.DataFrame | None, key: tuple[str, ...]) -> pl.DataFrame:
    """`rows` with `_artsim_deleted` false, then one row per deleted key with it true."""
    frames = [rows.with_columns(pl.lit(False).alias(DELETED_COLUMN))]
    if deleted is not None and deleted.height:
        frames.append(deleted.select(*key).with_columns(pl.lit(True).alias(DELETED_COLUMN)))
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
