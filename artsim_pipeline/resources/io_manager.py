"""The one IO manager for every table asset: polars DataFrames as Parquet through `TableStore`.

An asset may instead return a `TableUpsert` (the rows a run changed): they are upserted into the
stored table (`TableStore.upsert_table`), and readers still load the whole, de-duplicated table.
An unpartitioned asset that reads a partitioned one receives all partitions concatenated.
"""

from __future__ import annotations

import polars as pl
from dagster import ConfigurableIOManager, InputContext, OutputContext

from artsim_pipeline.resources.config import MergingConfig
from artsim_pipeline.resources.tables import TableStore, TableUpsert


class PolarsParquetIOManager(MergingConfig, ConfigurableIOManager):
    """Stores polars DataFrames as Parquet files in a `TableStore`."""

    store: TableStore

    def handle_output(self, context: OutputContext, obj: pl.DataFrame | TableUpsert | None) -> None:
        if obj is None:
            return
        partition = context.asset_partition_key if context.has_asset_partitions else None
        if isinstance(obj, TableUpsert):
            report = self.store.upsert_table(obj.rows, obj.key, context.asset_key.path, partition, deleted=obj.deleted)
            if obj.after_write is not None:
                obj.after_write()
            context.add_output_metadata({"path": report.uri, "rows": obj.total_rows if obj.total_rows is not None else report.rows_written,
                                         "rows_written": report.rows_written, "bytes_written": report.bytes_written,
                                         "compacted": report.compacted, "deltas": report.deltas})
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} returned {type(obj).__name__}, expected a polars DataFrame")
        path = self.store.write_table(obj, context.asset_key.path, partition)
        context.add_output_metadata({"path": str(path), "rows": obj.height})

    def load_input(self, context: InputContext) -> pl.DataFrame:
        key = context.asset_key.path
        if not context.has_asset_partitions:
            df = self.store.read_table(key)
            if df is None:
                raise FileNotFoundError(f"{context.asset_key.to_user_string()} has not been materialised ({self.store.table_path(key)})")
            return df
        frames = []
        missing = []
        for partition in context.asset_partition_keys:
            df = self.store.read_table(key, partition)
            if df is None:
                missing.append(partition)
            else:
                frames.append(df)
        if missing:
            context.log.warning(f"{context.asset_key.to_user_string()}: partitions {missing} are not materialised; reading the rest")
        if not frames:
            raise FileNotFoundError(f"{context.asset_key.to_user_string()}: no partition of {context.asset_partition_keys} is materialised")
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
