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

Several writers may upsert one table at once (two UI runs of a partition; `artsim materialize`
holds a lock, the UI does not), on disk or on S3, without losing a row: a delta is created only
where no file is (`ObjectStore.create_bytes`; a writer that finds its number taken takes the next)
and a base replaces only the base it was merged from (`replace_bytes`; a writer that loses starts
again). `covers` never goes down and numbers have no gaps, so a writer that lists the deltas after
creating its own, then reads the base's `covers`, knows whether a compaction may have covered its
number; the base's footer names the write ids of the deltas it merged (`artsim.merged`, the
latest `MERGED_KEPT`), so the writer writes its rows again only when its own delta is not among
them (a read may then apply them twice, in order, never drop them; rows merged already are never
written again, which would undo a later writer's change to them). Compaction removes only the
deltas it merged. Every file's footer carries a write id (`artsim.write_id`), so
`table_fingerprint` tells two writes apart without reading them.
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
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
WRITE_ID_META = "artsim.write_id"  # one per write: what `table_fingerprint` tells rewrites apart by
MERGED_META = "artsim.merged"  # write ids of the deltas a base merged, newest last
# merged ids a base keeps (its own and, carried over, earlier bases'): a writer checks its delta
# within moments of writing it, so a few compactions' worth is plenty (33 bytes each in the footer)
MERGED_KEPT = 256
MAX_ATTEMPTS = 100  # conditional writes lost to other writers before giving up
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
    merged: tuple[str, ...] = ()


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
        key = self.table_key(asset_key, partition_key)
        for _ in range(MAX_ATTEMPTS):
            version = self.objects.version(key)
            info = self._base_info(key) if version is not None else None
            deltas = self._deltas(asset_key, partition_key)
            # covers never goes down: a writer's check of its new delta relies on it (`_add_delta`)
            covers = max([info.covers if info is not None else 0, *(seq for seq, _, _ in deltas)])
            data = self._parquet(df, covers=covers or None)
            if self.objects.replace_bytes(key, data, version):  # not over a base another writer just stored
                self._remove_deltas(deltas, covers)
                return self.objects.uri(key)
        raise RuntimeError(f"{self.objects.uri(key)} kept changing while it was written")

    def read_table(self, asset_key: str | list[str], partition_key: str | None = None,
                   columns: Sequence[str] | None = None) -> pl.DataFrame | None:
        """The stored table (an upserted one merged with its deltas), or None when it has never
        been written; only `columns` of it when given (the others are not decoded)."""
        columns = None if columns is None else list(dict.fromkeys(columns))
        for _ in range(3):
            data = self.objects.read_bytes(self.table_key(asset_key, partition_key))
            if data is None:
                return None
            info = self._info(pl.read_parquet_metadata(io.BytesIO(data)))
            wanted = None if columns is None else list(dict.fromkeys([*columns, *(info.key or ())]))
            # a column only the deltas have yet is null for the base's rows, as in a whole read
            base = pl.read_parquet(io.BytesIO(data), columns=None if wanted is None else
                                   [c for c in wanted if c in pl.read_parquet_schema(io.BytesIO(data))])
            if info.key is None:
                return base if columns is None else base.select(columns)  # a column no file has: an error
            live = [d for d in self._deltas(asset_key, partition_key) if d[0] > info.covers]
            deltas = [self.objects.read_bytes(k) for _, _, k in live]
            # a compaction that wrote a new base between reading this one and listing the deltas
            # removed them (or some): the base read is then stale, so read again
            now = self._base_info(self.table_key(asset_key, partition_key))
            if all(d is not None for d in deltas) and now is not None and now.covers == info.covers:
                if live:
                    base = latest_rows([base, *(_read_delta(d, wanted) for d in deltas)], info.key)
                return base if columns is None else base.select(columns)
        raise RuntimeError(f"{self.table_path(asset_key, partition_key)} kept changing while it was read")

    # -- upserted tables ---------------------------------------------------------------------------

    def upsert_table(self, rows: pl.DataFrame, key: Sequence[str], asset_key: str | list[str], partition_key: str | None = None,
                     *, deleted: pl.DataFrame | None = None) -> UpsertReport:
        """Store `rows` over the rows with the same `key` and remove the `deleted` keys, writing
        one delta of their size (or, when the deltas pass the compaction threshold, the merged
        table as the new base). Safe with other writers of the same table at the same time (two
        runs of one partition): every write is conditional and retried, no delta is overwritten."""
        key = tuple(key)
        table_key = self.table_key(asset_key, partition_key)
        change = _as_delta(rows, deleted, key)
        for _ in range(MAX_ATTEMPTS):
            info = self._base_info(table_key)
            deltas = self._deltas(asset_key, partition_key)
            live = [d for d in deltas if info is not None and d[0] > info.covers]
            if info is not None and change.height == 0:
                return UpsertReport(self.objects.uri(table_key), 0, 0, False, len(live))
            delta_rows = sum(n for _, n, _ in live) + change.height
            compact = (info is None or info.key != key or len(live) + 1 >= self.max_deltas
                       or delta_rows > self.compact_fraction * max(info.rows, 1))
            report = (self._compact(change, key, asset_key, partition_key) if compact
                      else self._add_delta(change, info, deltas, asset_key, partition_key))
            if report is not None:
                return report
        raise RuntimeError(f"{self.table_path(asset_key, partition_key)}: too many concurrent writers, upsert not stored")

    def _compact(self, change: pl.DataFrame, key: tuple[str, ...], asset_key: str | list[str],
                 partition_key: str | None) -> UpsertReport | None:
        """The stored table merged with `change` as the new base, replacing the base it was read
        from only if that is still the stored one; None when another writer changed it first."""
        table_key = self.table_key(asset_key, partition_key)
        version = self.objects.version(table_key)
        data = self.objects.read_bytes(table_key) if version is not None else None
        if (version is None) != (data is None):
            return None  # replaced or removed between the two reads
        frames, covers, merged = [], 0, ()
        if data is not None:
            frames.append(pl.read_parquet(io.BytesIO(data)))
            previous = self._info(pl.read_parquet_metadata(io.BytesIO(data)))
            covers, merged = previous.covers, previous.merged
        deltas = self._deltas(asset_key, partition_key)
        live = [(seq, item) for seq, _, item in deltas if seq > covers]
        stored = [self.objects.read_bytes(item) for _, item in live]
        if any(d is None for d in stored):
            return None  # another compaction removed them: it stored a new base
        frames.extend(pl.read_parquet(io.BytesIO(d)) for d in stored)
        merged_ids = [pl.read_parquet_metadata(io.BytesIO(d)).get(WRITE_ID_META) for d in stored]
        merged_ids = [*merged, *(i for i in merged_ids if i)][-MERGED_KEPT:]
        table = latest_rows([*frames, change], key)
        # deltas only ever go above covers (a writer checks its own against it), so never lower it
        covers = max([covers, *(seq for seq, _, _ in deltas)])
        data = self._parquet(table, key=key, covers=covers, merged=merged_ids)
        if not self.objects.replace_bytes(table_key, data, version):
            return None
        # only the deltas listed above: one written since is numbered above covers, and stays
        self._remove_deltas(deltas, covers)
        return UpsertReport(self.objects.uri(table_key), table.height, len(data), True, 0)

    def _add_delta(self, change: pl.DataFrame, info: _BaseInfo, deltas: list[tuple[int, int, str]],
                   asset_key: str | list[str], partition_key: str | None) -> UpsertReport | None:
        """`change` as the next delta, created only where no file is (another writer may take the
        same number: then the next one). None when the delta may be covered by a compaction that
        did not read it (the caller starts again; that delta is left, so a read may apply those
        rows twice, never lose them)."""
        table_key = self.table_key(asset_key, partition_key)
        prefix = self.deltas_prefix(asset_key, partition_key)
        write_id = uuid.uuid4().hex
        data = self._parquet(change, write_id=write_id)
        seq = max([info.covers, *(seq for seq, _, _ in deltas)]) + 1
        for _ in range(MAX_ATTEMPTS):
            name = f"{prefix}/{seq:010d}-{change.height}.parquet"
            if self.objects.create_bytes(name, data):
                break
            seq += 1
        else:
            return None
        # A compaction that listed the deltas before this one was created covers at most the
        # highest number it saw. Numbers have no gaps, so if that reaches `seq`, a delta of that
        # number (another writer's, other rows) was there before ours, or a base covering it:
        # list first, then read the base, and either shows (a delta leaves only after the base
        # that covers it is stored). A base that merged our delta names it: then it is stored, and
        # writing it again could undo what other writers stored since (a row deleted after).
        deltas = self._deltas(asset_key, partition_key)
        now = self._base_info(table_key)
        if now is not None and write_id in now.merged:
            return UpsertReport(self.objects.uri(table_key), change.height, len(data), False,
                                sum(1 for s, _, _ in deltas if s > now.covers))
        if now is None or now.covers >= seq or any(s == seq and item != name for s, _, item in deltas):
            return None
        live = sum(1 for s, _, _ in deltas if s > now.covers)
        return UpsertReport(self.objects.uri(table_key), change.height, len(data), False, live)

    def table_fingerprint(self, asset_key: str | list[str], partition_key: str | None = None) -> str | None:
        """A digest that changes whenever the stored table does (None when it was never written):
        its stamp and the end of its file, which holds the Parquet footer with the write's
        `artsim.write_id` (one per write, so a rewrite of the same size within the filesystem's
        mtime resolution still changes it), plus the deltas of an upserted table. One small read."""
        table_key = self.table_key(asset_key, partition_key)
        stamp = self.objects.stamp(table_key)
        tail = self.objects.read_tail(table_key, FOOTER_BYTES) if stamp is not None else None
        if tail is None:
            return None
        digest = hashlib.sha256(repr(stamp).encode("utf-8"))
        digest.update(tail)
        if UPSERT_KEY_META.encode("utf-8") in tail:  # an upserted table: its deltas are part of it
            for _, _, item in self._deltas(asset_key, partition_key):
                digest.update(item.encode("utf-8"))
        return digest.hexdigest()

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _parquet(df: pl.DataFrame, *, key: tuple[str, ...] | None = None, covers: int | None = None,
                 merged: Sequence[str] = (), write_id: str | None = None) -> bytes:
        metadata = {WRITE_ID_META: write_id or uuid.uuid4().hex}
        if key is not None:
            metadata |= {UPSERT_KEY_META: ",".join(key), ROWS_META: str(df.height)}
        if covers is not None:
            metadata[COVERS_META] = str(covers)
        if merged:
            metadata[MERGED_META] = ",".join(merged)
        buffer = io.BytesIO()
        df.write_parquet(buffer, metadata=metadata)
        return buffer.getvalue()

    @staticmethod
    def _info(metadata: dict[str, str]) -> _BaseInfo:
        key = metadata.get(UPSERT_KEY_META)
        merged = tuple(filter(None, metadata.get(MERGED_META, "").split(",")))
        return _BaseInfo(tuple(key.split(",")) if key else None, int(metadata.get(COVERS_META, 0)),
                         int(metadata.get(ROWS_META, 0)), merged)

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


def _read_delta(data: bytes, columns: list[str] | None) -> pl.DataFrame:
    """A delta file: `columns` of it (those it has) and its deletion marks, or all of it."""
    if columns is None:
        return pl.read_parquet(io.BytesIO(data))
    present = pl.read_parquet_schema(io.BytesIO(data))
    return pl.read_parquet(io.BytesIO(data), columns=[c for c in [*columns, DELETED_COLUMN] if c in present])


def _as_delta(rows: pl.DataFrame, deleted: pl.DataFrame | None, key: tuple[str, ...]) -> pl.DataFrame:
    """`rows` with `_artsim_deleted` false, then one row per deleted key with it true."""
    frames = [rows.with_columns(pl.lit(False).alias(DELETED_COLUMN))]
    if deleted is not None and deleted.height:
        frames.append(deleted.select(*key).with_columns(pl.lit(True).alias(DELETED_COLUMN)))
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
