"""The serving copy of `artworks`: uncompressed Arrow sorted by id, memory-mapped by the service.

Part of the storage layout: `resources/artefacts/__init__.py` has the table of keys."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import polars as pl

from artsim_pipeline.resources.storage import ArtsimStorage
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from artsim_pipeline.core.search import ArtworkRows
    from artsim_pipeline.resources.tables import TableStore


# -- the serving copy of artworks (memory-mapped by the similar-works service) -----------------------------

SERVING_ARTWORKS_DIR = "cache/serving/artworks"


def serving_artworks_file(storage: ArtsimStorage, source: str, fingerprint: str) -> Path:
    """Where the serving copy of one museum's `artworks` table, as stored at `fingerprint`
    (`TableStore.table_fingerprint`), lives."""
    digest = hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:16]
    return storage.root / SERVING_ARTWORKS_DIR / f"{source}-{digest}.arrow"


SERVING_BATCH_ROWS = 32_768


def write_serving_artworks(frame: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """One museum's artworks rows, sorted by `artwork_id` (the first row of an id kept), as an
    uncompressed Arrow IPC file (memory-mappable); written beside, then renamed. Rows go out in
    sorted batches of `SERVING_BATCH_ROWS`, so no sorted copy of the whole table is ever held."""
    import pyarrow as pa

    path = Path(path)
    ids = pl.col("artwork_id")
    order = (frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), ids)
             .filter(ids.is_not_null() & ids.is_first_distinct()).sort("artwork_id")["row"].to_numpy())
    schema = frame.head(0).to_arrow().schema
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.time_ns()}")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for start in range(0, len(order), SERVING_BATCH_ROWS):
                writer.write_table(frame[order[start:start + SERVING_BATCH_ROWS]].to_arrow().cast(schema))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_serving_artworks(path: str | os.PathLike[str]) -> pa.Table:
    """A file of `write_serving_artworks`, memory-mapped: rows are paged in when read."""
    import pyarrow as pa

    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def serving_artworks(storage: ArtsimStorage, tables: TableStore, sources) -> ArtworkRows | None:
    """The `artworks` tables of `sources` as `core.search.ArtworkRows` over memory-mapped serving
    copies (None when no table is stored). A copy is written the first time a table is seen as
    stored (one museum's table in memory at a time) and reused until the table changes: keyed on
    the table's fingerprint (its footer, with the write's id), not only its mtime and size, which a
    rewrite of the same size within the mtime resolution would leave as they were."""
    from artsim_pipeline.core.search import ArtworkRows

    found = {}
    for source in sources:
        table = _serving_copy(storage, tables, source)
        if table is not None:
            found[source] = table
    return ArtworkRows(found) if found else None


SERVING_ATTEMPTS = 5  # the table changing under us this many times in a row: give up


def _serving_copy(storage: ArtsimStorage, tables: TableStore, source: str) -> pa.Table | None:
    """One museum's serving copy, mapped (None when no table is stored). Other processes (a second
    worker, `artsim search`) write and remove copies too: one that has seen a newer table removes
    the copies of older ones, perhaps ours before we opened it, which means the table changed
    since we looked, so we look again; and a copy is written only from a table that still has the
    fingerprint it is named after once read."""
    for _ in range(SERVING_ATTEMPTS):
        fingerprint = tables.table_fingerprint("artworks", source)
        if fingerprint is None:
            return None
        path = serving_artworks_file(storage, source, fingerprint)
        if not path.exists():
            frame = tables.read_table("artworks", source)
            if frame is None:
                return None
            if tables.table_fingerprint("artworks", source) != fingerprint:
                continue  # rewritten while read: these rows may be the new table's
            write_serving_artworks(frame, path)
            del frame
            for old in path.parent.glob(f"{source}-*.arrow"):
                if old != path:
                    old.unlink(missing_ok=True)  # a reader that mapped it keeps its pages
        try:
            return read_serving_artworks(path)
        except FileNotFoundError:
            continue  # removed by a process that saw a newer table
    raise RuntimeError(f"the artworks table of {source} kept changing while its serving copy was made")
