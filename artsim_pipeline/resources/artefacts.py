"""The storage layout: where every artefact the pipeline stores beside its tables lives, and the
functions that write and read it. Assets, the service, the web app and the CLI go through here;
none of them builds a key or a file name itself.

Keys are relative to the storage of `ArtsimStorage` (`$ARTSIM_HOME` locally, the S3 prefix in
prod); the tables themselves are the IO manager's (`storage/<asset>/<partition>.parquet`,
`resources/tables.py`).

| artefact | key | written by |
|---|---|---|
| images | `images/<sha[:2]>/<sha>.<ext>` (content-addressed) | `raw_images` |
| fetch cursors | `state/raw_objects/<source>.json` | `raw_objects` |
| fetch journal | `checkpoints/raw_objects/<source>.jsonl` (always local: only a crashed run on the same machine resumes from it; emptied once the run's rows are stored) | `raw_objects` |
| curator judgments | `feedback/judgments.jsonl` (a local journal, `resources/journal.py`); on S3 one object per judgment, `feedback/judgments/<judgment_id>.json`, never overwritten | `artsim serve` |
| similar-works index | `indexes/ann_index/`: `index.bin` (hnswlib), `id_map.parquet`, `build_info.json`; replaced whole | `ann_index` |
| similarity heads | `models/similarity_model/<mlflow run id>/`: `head.pt`, `head_config.json` | `similarity_model` |
| search index | `indexes/search_index/`: `keyword/` (bm25s + `ids.parquet`), `text/`, `image/` (as the ANN index), `search_info.json` written last | `search_index` |
| collection map | `maps/collection_map.html` (the single-file page, small collections); `maps/collection_map/`: `manifest.json`, `chunks/<hash>.bin`, `details-<hash>.parquet` (the chunked map), `layout/` (coordinates and vector fingerprints for incremental placement) | `collection_map` |
| clusters' state | `models/clusters/`: `labels.parquet`, `centroids.npy`, `info.json` (for incremental assignment) | `clusters` |
| serving copy of `artworks` | `cache/serving/artworks/<source>-<stamp digest>.arrow` (always local: uncompressed Arrow, sorted by `artwork_id`, memory-mapped) | `artsim serve`, `artsim similar` (from the table, when it changed) |

Heavy libraries (hnswlib, torch, bm25s) are imported inside the functions that need them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from artsim_pipeline.core import feedback
from artsim_pipeline.core.raw_store import FetchResult
from artsim_pipeline.resources import journal
from artsim_pipeline.resources.objects import LocalObjectStore
from artsim_pipeline.resources.storage import ArtsimStorage

if TYPE_CHECKING:
    import pyarrow as pa

    from artsim_pipeline.core.ann import AnnConfig, AnnIndex
    from artsim_pipeline.core.search import ArtworkRows
    from artsim_pipeline.resources.tables import TableStore
    from artsim_pipeline.core.text_search import KeywordIndex

# -- images ------------------------------------------------------------------------------------------

IMAGES_PREFIX = "images"


def write_image(storage: ArtsimStorage, relpath: str, content: bytes) -> None:
    """Store an image under `images/<relpath>` (`core.images.image_relpath`: content-addressed,
    so an existing file already holds these bytes and is left alone)."""
    key = f"{IMAGES_PREFIX}/{relpath}"
    if not storage.objects.exists(key):
        storage.objects.write_bytes(key, content)


def image_file(storage: ArtsimStorage, relpath: str) -> Path | None:
    """A local path to the stored image (cached from S3 when remote), or None."""
    return storage.local_file(f"{IMAGES_PREFIX}/{relpath}")


def read_image(storage: ArtsimStorage, relpath: str) -> bytes | None:
    """The stored image's bytes (through the local cache when remote), or None."""
    path = image_file(storage, relpath)
    return path.read_bytes() if path is not None else None


def stored_images(storage: ArtsimStorage) -> set[str]:
    """The `relpath` of every stored image."""
    return {key[len(IMAGES_PREFIX) + 1:] for key in storage.objects.list_keys(IMAGES_PREFIX)}


def local_images_dir(home: str | os.PathLike[str]) -> Path:
    """The folder of the images under a local home (`$ARTSIM_HOME/images`)."""
    return Path(home) / IMAGES_PREFIX


# -- small JSON state (fetch cursors) ------------------------------------------------------------------


def read_state(storage: ArtsimStorage, name: str) -> dict[str, Any]:
    data = storage.objects.read_bytes(f"state/{name}.json")
    return json.loads(data) if data else {}


def write_state(storage: ArtsimStorage, name: str, state: dict[str, Any]) -> None:
    storage.objects.write_bytes(f"state/{name}.json", json.dumps(state, indent=2, sort_keys=True).encode("utf-8"))


# -- the fetch journal ------------------------------------------------------------------------------------


def checkpoint_path(storage: ArtsimStorage, asset: str, partition: str) -> Path:
    """The fetch journal of one partition: always under the local home, never on S3."""
    return storage.root / "checkpoints" / asset / f"{partition}.jsonl"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@functools.lru_cache(maxsize=None)
def _journal_dictionary(source: str | None) -> tuple[bytes | None, str | None]:
    """A zlib preset dictionary for the journal of `source`: a few of its sample records (the
    keys and common values a lone record cannot compress against), and its id (lines written
    with another dictionary are not reused). None for sources without sample records."""
    from artsim_pipeline.sample import load_sample_raw_lines

    try:
        lines = load_sample_raw_lines(source) if source else []
    except (ValueError, OSError):
        lines = []
    if not lines:
        return None, None
    step = max(1, len(lines) // 8)
    zdict = "\n".join(lines[::step][:8]).encode("utf-8")[-32768:]  # zlib uses the last 32 KiB
    return zdict, f"{zlib.crc32(zdict):08x}"


class FetchCheckpoint:
    """An append-only JSON-lines journal of fetch results, so a killed run resumes where it stopped.

    Each result is flushed as soon as it arrives, as one short line: its fields under one-letter
    names (empty ones left out) and the record's text zlib-compressed (base85) against a preset
    dictionary of the source's sample records (a fifth of the JSON for a Met record). A
    successful run folds the journal into the stored table and then empties it (`clear`, after
    the table is written), so it holds at most one unfinished run. On
    the next run, entries that already reached the stored table are dropped (`compact`: a crash
    after the table was written and before the journal was emptied) and the rest are reused
    instead of fetched again. Lines of the earlier, uncompressed form are still read.
    """

    def __init__(self, path: Path, source: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = None
        self._zdict, self._zdict_id = _journal_dictionary(source)

    @classmethod
    def of(cls, storage: ArtsimStorage, asset: str, partition: str) -> FetchCheckpoint:
        return cls(checkpoint_path(storage, asset, partition), source=partition)

    def load(self) -> list[FetchResult]:
        if not self.path.exists():
            return []
        results = []
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    results.append(self._parse(json.loads(line.decode("utf-8"))))
                except (ValueError, TypeError, KeyError, RecursionError, zlib.error):
                    continue  # a line cut short by the crash (or damaged): that fetch is simply redone
        return results

    def compact(self, stored: pl.DataFrame | None) -> list[FetchResult]:
        """Keep only results worth reusing that the stored table does not hold yet; returns them.

        `ok` and `gone` answers are final and reused; `error` answers are dropped so that the
        resumed run tries those objects again.
        """
        pending = [r for r in self.load() if r.status != "error"]
        if pending and stored is not None and stored.height:
            keys = pl.DataFrame({"source_id": [r.source_id for r in pending],
                                 "key": [r.content_hash if r.status == "ok" else r.status for r in pending]},
                                schema={"source_id": pl.String(), "key": pl.String()})
            held = stored.select("source_id", key=pl.when(pl.col("status") == "ok").then(pl.col("content_hash")).otherwise(pl.col("status")))
            fresh = keys.with_row_index().join(held, on=["source_id", "key"], how="anti")["index"].to_list()
            pending = [pending[i] for i in sorted(fresh)]
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for result in pending:
                handle.write(self._line(result))
        os.replace(tmp, self.path)
        return pending

    def _line(self, result: FetchResult) -> str:
        entry: dict[str, Any] = {"i": result.source_id, "s": result.status,
                                 "t": (result.fetched_at - _EPOCH) // timedelta(microseconds=1)}
        for name, value in (("e", result.error), ("m", result.modified), ("r", result.text_repairs)):
            if value:
                entry[name] = value
        if result.raw_json is not None:
            # the text is storable (FetchResult escaped any lone surrogate), so UTF-8 always encodes it
            packer = zlib.compressobj(9, zdict=self._zdict) if self._zdict else zlib.compressobj(9)
            packed = packer.compress(result.raw_json.encode("utf-8")) + packer.flush()
            entry["z"] = base64.b85encode(packed).decode("ascii")
            if self._zdict:
                entry["d"] = self._zdict_id
        return json.dumps(entry, ensure_ascii=True, separators=(",", ":")) + "\n"

    def _parse(self, entry: dict[str, Any]) -> FetchResult:
        if "source_id" in entry:  # the earlier form: FetchResult's fields as they are
            entry["fetched_at"] = datetime.fromisoformat(entry["fetched_at"])
            return FetchResult(**entry)
        raw = entry.get("z")
        if raw is not None:
            dictionary_id = entry.get("d")
            if dictionary_id is not None and dictionary_id != self._zdict_id:
                raise ValueError("written with another dictionary")  # e.g. the sample changed: fetched again
            unpacker = zlib.decompressobj(zdict=self._zdict) if dictionary_id else zlib.decompressobj()
            raw = (unpacker.decompress(base64.b85decode(raw)) + unpacker.flush()).decode("utf-8")
        return FetchResult(
            entry["i"], entry["s"], raw_json=raw,
            error=entry.get("e"), modified=entry.get("m"), text_repairs=int(entry.get("r", 0)),
            fetched_at=_EPOCH + timedelta(microseconds=entry["t"]),
        )

    def append(self, result: FetchResult) -> None:
        if self._handle is None:
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(self._line(result))
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def clear(self) -> None:
        """Empty the journal: its results are in the stored table (called once the table is written)."""
        self.close()
        self.path.unlink(missing_ok=True)


# -- curator judgments ---------------------------------------------------------------------------------

JUDGMENTS_KEY = "feedback/judgments.jsonl"  # the journal under a home
JUDGMENTS_PREFIX = "feedback/judgments"  # remote: one object per judgment, named by its id


def judgments_path(home: str | os.PathLike[str]) -> Path:
    """``<home>/feedback/judgments.jsonl``."""
    return Path(home) / JUDGMENTS_KEY


def append_judgment(home: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Append one record to the journal under `home`, durably (`resources/journal.py`)."""
    return journal.append_line(judgments_path(home), feedback.judgment_line(record))


def record_judgment(home: str | os.PathLike[str], anchor_id: str, candidate_ids, chosen_id: str,
                    curator: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Validate (`core.feedback.make_judgment`) and durably append one judgment; returns the record."""
    record = feedback.make_judgment(anchor_id, candidate_ids, chosen_id, curator, **kwargs)
    append_judgment(home, record)
    return record


def read_judgment_records(home: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete judgment of the journal under `home`, in file order (a torn last line is skipped)."""
    path = judgments_path(home)
    return feedback.parse_judgments(journal.read_all(path), str(path))


def load_judgments(home: str | os.PathLike[str]) -> pl.DataFrame:
    """The journal under `home` as a frame (`core.feedback.JUDGMENTS_SCHEMA`; empty when none)."""
    return feedback.judgments_frame(read_judgment_records(home))


def judgments_home(storage: ArtsimStorage) -> Path:
    """A directory whose `feedback/judgments.jsonl` is the current judgments journal: `home`
    itself locally; when remote, a journal rebuilt from the one object per judgment under
    `feedback/judgments/`, oldest first."""
    if not storage.is_remote:
        return storage.root
    objects = storage.objects
    records = [json.loads(objects.read_bytes(key) or b"null") for key in objects.list_keys(JUDGMENTS_PREFIX)]
    records = sorted((r for r in records if isinstance(r, dict)), key=lambda r: (str(r.get("created_at")), str(r.get("judgment_id"))))
    lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    LocalObjectStore(storage.root / "cache").write_bytes(JUDGMENTS_KEY, lines.encode("utf-8"))
    return storage.root / "cache"


def stored_judgments(storage: ArtsimStorage) -> list[dict[str, Any]]:
    """Every judgment the storage holds (local journal or S3 objects), oldest first."""
    return read_judgment_records(judgments_home(storage))


def judgments_table(storage: ArtsimStorage) -> pl.DataFrame:
    """`stored_judgments` as a frame (`core.feedback.JUDGMENTS_SCHEMA`)."""
    return feedback.judgments_frame(stored_judgments(storage))


def publish_judgments(storage: ArtsimStorage, home: str | os.PathLike[str]) -> int:
    """Store each judgment of the journal under `home` as its own object (remote only: locally
    the journal already is the storage). Objects are never overwritten, so web apps on several
    hosts add to one collection and none can erase another's judgments. Returns how many were new."""
    if not storage.is_remote:
        return 0
    stored = set(storage.objects.list_keys(JUDGMENTS_PREFIX))
    new = 0
    for record in read_judgment_records(home):
        key = f"{JUDGMENTS_PREFIX}/{record['judgment_id']}.json"
        if key not in stored:
            storage.objects.write_bytes(key, json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"))
            new += 1
    return new


# -- the similar-works index (ann_index) ----------------------------------------------------------------

ANN_INDEX_KEY = "indexes/ann_index"
ANN_INDEX_FILE, ANN_ID_MAP_FILE, ANN_BUILD_INFO_FILE = "index.bin", "id_map.parquet", "build_info.json"


def write_ann_index(index: AnnIndex, directory: str | os.PathLike[str]) -> Path:
    """Write index.bin, id_map.parquet, build_info.json into `directory` atomically: everything
    goes to a temporary sibling directory that is then renamed into place (an existing directory
    is moved aside first and removed after the swap)."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with index.parts() as (hnsw, id_map, info):
            hnsw.save_index(str(tmp / ANN_INDEX_FILE))
            id_map.write_parquet(tmp / ANN_ID_MAP_FILE)
            info["index_file_bytes"] = (tmp / ANN_INDEX_FILE).stat().st_size
            (tmp / ANN_BUILD_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_ann_index(directory: str | os.PathLike[str], config: AnnConfig | None = None) -> AnnIndex:
    """An index written by `write_ann_index`. `config` overrides query-time settings (ef,
    num_threads); build parameters come from build_info.json."""
    import hnswlib

    from artsim_pipeline.core.ann import AnnIndex

    d = Path(directory)
    info = json.loads((d / ANN_BUILD_INFO_FILE).read_text(encoding="utf-8"))
    hnsw = hnswlib.Index(space=AnnIndex.stored_config(info).space, dim=int(info["dim"]))
    hnsw.load_index(str(d / ANN_INDEX_FILE), max_elements=int(info.get("max_elements", 0)), allow_replace_deleted=True)
    try:
        return AnnIndex.from_parts(hnsw, pl.read_parquet(d / ANN_ID_MAP_FILE), info, config)
    except ValueError as exc:
        raise ValueError(f"{d}: {exc}") from exc


def _is_ann_dir(directory: Path | None) -> bool:
    return directory is not None and (directory / ANN_INDEX_FILE).exists()


def stored_ann_index(storage: ArtsimStorage, config: AnnConfig | None = None) -> AnnIndex | None:
    """The index `ann_index` last stored (fetched from S3 when the storage is remote), or None."""
    directory = storage.fetch_dir(ANN_INDEX_KEY)
    return read_ann_index(directory, config) if _is_ann_dir(directory) else None


def load_ann_index(storage: ArtsimStorage, config: AnnConfig | None = None) -> AnnIndex:
    """`stored_ann_index`, or FileNotFoundError when none is stored."""
    index = stored_ann_index(storage, config)
    if index is None:
        raise FileNotFoundError(f"no ann_index under {storage.objects.uri(ANN_INDEX_KEY)}")
    return index


def save_ann_index(storage: ArtsimStorage, index: AnnIndex) -> str:
    """Store the index (replacing the stored one whole); returns where it lives."""
    with storage.staged_dir(ANN_INDEX_KEY) as directory:
        write_ann_index(index, directory)
    return storage.objects.uri(ANN_INDEX_KEY)


# -- similarity heads -----------------------------------------------------------------------------------

HEADS_PREFIX = "models/similarity_model"
HEAD_FILE, HEAD_CONFIG_FILE = "head.pt", "head_config.json"


def head_key(run_id: str) -> str:
    """Where `similarity_model` stores a run's head (the row's `head_key`)."""
    return f"{HEADS_PREFIX}/{run_id}"


def write_head(head, directory: str | os.PathLike[str], config: dict) -> Path:
    """The head's weights and the config that rebuilds it, into `directory`."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(head.state_dict(), directory / HEAD_FILE)
    (directory / HEAD_CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    return directory


def read_head(directory: str | os.PathLike[str]):
    """(head in eval mode, its config) from a directory written by `write_head`."""
    import torch

    from artsim_pipeline.core.ml.similarity import build_head

    directory = Path(directory)
    config = json.loads((directory / HEAD_CONFIG_FILE).read_text())
    # heads saved before the identity-start head existed have no "head" key: they are projections
    head = build_head(config.get("head", "pca"), config["input_dim"], config["hidden_dim"], config["out_dim"], config["dropout"])
    head.load_state_dict(torch.load(directory / HEAD_FILE, map_location="cpu", weights_only=True))
    return head.eval(), config


def save_head(storage: ArtsimStorage, run_id: str, head, config: dict) -> str:
    """Store a run's head; returns its key (`head_key`)."""
    key = head_key(run_id)
    with storage.staged_dir(key) as directory:
        write_head(head, directory, config)
    return key


def load_head(storage: ArtsimStorage, key: str):
    """(head, config) stored under `key` (fetched from S3 when the storage is remote)."""
    directory = storage.fetch_dir(key)
    if directory is None:
        raise FileNotFoundError(f"no model head under {storage.objects.uri(key)}")
    return read_head(directory)


# -- the search index (search_index) --------------------------------------------------------------------

SEARCH_INDEX_KEY = "indexes/search_index"
SEARCH_INFO_FILE = "search_info.json"
KEYWORD_IDS_FILE = "ids.parquet"


def write_keyword_index(keyword: KeywordIndex, directory: str | os.PathLike[str]) -> None:
    """The BM25 index (bm25s' files) and its artwork ids (`ids.parquet`) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keyword.retriever.save(str(directory), show_progress=False)
    pl.DataFrame({"artwork_id": keyword.ids}, schema={"artwork_id": pl.String}).write_parquet(directory / KEYWORD_IDS_FILE)


def read_keyword_index(directory: str | os.PathLike[str]) -> KeywordIndex:
    """A keyword index written by `write_keyword_index`."""
    import bm25s

    from artsim_pipeline.core.text_search import KeywordIndex

    retriever = bm25s.BM25.load(str(directory), show_progress=False)
    return KeywordIndex(pl.read_parquet(directory / KEYWORD_IDS_FILE)["artwork_id"].to_list(), retriever)


def write_search_index(directory: str | os.PathLike[str], keyword: KeywordIndex, indexes: dict[str, AnnIndex],
                       info: dict[str, Any]) -> None:
    """The keyword index and the vector indexes (by part: `core.text_search.TEXT_DIR`,
    `IMAGE_DIR`) into `directory`: each part replaced whole (written beside, then renamed), parts
    no longer built removed, and search_info.json (what readers reload on) written last."""
    from artsim_pipeline.core import text_search as ts

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".keyword.tmp-", dir=directory))
    write_keyword_index(keyword, staging)
    old = directory / f".{ts.KEYWORD_DIR}.old-{time.time_ns()}"
    if (directory / ts.KEYWORD_DIR).exists():
        (directory / ts.KEYWORD_DIR).rename(old)
    staging.rename(directory / ts.KEYWORD_DIR)
    shutil.rmtree(old, ignore_errors=True)
    for part in (ts.TEXT_DIR, ts.IMAGE_DIR):
        if part in indexes:
            write_ann_index(indexes[part], directory / part)
        elif (directory / part).exists():
            shutil.rmtree(directory / part)
    info = {**info, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    staging = Path(tempfile.mkdtemp(prefix=".info.tmp-", dir=directory))
    (staging / SEARCH_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    (staging / SEARCH_INFO_FILE).replace(directory / SEARCH_INFO_FILE)
    staging.rmdir()


def read_search_index(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], KeywordIndex, AnnIndex | None, AnnIndex | None]:
    """(info, keyword index, text index or None, image index or None) of a stored search index."""
    from artsim_pipeline.core import text_search as ts

    path = Path(directory)
    info = json.loads((path / SEARCH_INFO_FILE).read_text(encoding="utf-8"))
    parts = set(info.get("parts", []))
    text = read_ann_index(path / ts.TEXT_DIR) if ts.TEXT_DIR in parts else None
    image = read_ann_index(path / ts.IMAGE_DIR) if ts.IMAGE_DIR in parts else None
    return info, read_keyword_index(path / ts.KEYWORD_DIR), text, image


def stored_search_vector_indexes(storage: ArtsimStorage, config: AnnConfig | None = None) -> dict[str, AnnIndex]:
    """The vector indexes of the search index last stored, by part (empty when none is stored):
    what `search_index` updates incrementally."""
    from artsim_pipeline.core import text_search as ts

    directory = storage.fetch_dir(SEARCH_INDEX_KEY)
    if directory is None:
        return {}
    return {part: read_ann_index(directory / part, config) for part in (ts.TEXT_DIR, ts.IMAGE_DIR) if _is_ann_dir(directory / part)}


def save_search_index(storage: ArtsimStorage, keyword: KeywordIndex, indexes: dict[str, AnnIndex], info: dict[str, Any]) -> str:
    """Store the search index (`write_search_index`); returns where it lives."""
    with storage.staged_dir(SEARCH_INDEX_KEY) as directory:
        write_search_index(directory, keyword, indexes, info)
    return storage.objects.uri(SEARCH_INDEX_KEY)


def load_search_index(storage: ArtsimStorage):
    """`read_search_index` of the stored search index, or FileNotFoundError when none is stored."""
    directory = storage.fetch_dir(SEARCH_INDEX_KEY)
    if directory is None or not (directory / SEARCH_INFO_FILE).exists():
        raise FileNotFoundError(f"no search_index under {storage.objects.uri(SEARCH_INDEX_KEY)}")
    return read_search_index(directory)


def index_stamps(storage: ArtsimStorage) -> tuple:
    """What changes whenever `ann_index` or `search_index` is stored again (readers reload on it)."""
    return (storage.objects.stamp(f"{ANN_INDEX_KEY}/{ANN_BUILD_INFO_FILE}"),
            storage.objects.stamp(f"{SEARCH_INDEX_KEY}/{SEARCH_INFO_FILE}"))


# -- the serving copy of artworks (memory-mapped by the similar-works service) -----------------------------

SERVING_ARTWORKS_DIR = "cache/serving/artworks"


def serving_artworks_file(storage: ArtsimStorage, source: str, stamp: tuple) -> Path:
    """Where the serving copy of one museum's `artworks` table, as stored at `stamp`, lives."""
    digest = hashlib.sha256(repr(stamp).encode("utf-8")).hexdigest()[:16]
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
    stored (one museum's table in memory at a time) and reused until the table changes."""
    from artsim_pipeline.core.search import ArtworkRows

    found = {}
    for source in sources:
        stamp = tables.objects.stamp(tables.table_key("artworks", source))
        if stamp is None:
            continue
        path = serving_artworks_file(storage, source, stamp)
        if not path.exists():
            frame = tables.read_table("artworks", source)
            if frame is None:
                continue
            write_serving_artworks(frame, path)
            del frame
            for old in path.parent.glob(f"{source}-*.arrow"):
                if old != path:
                    old.unlink(missing_ok=True)  # a reader that mapped it keeps its pages
        found[source] = read_serving_artworks(path)
    return ArtworkRows(found) if found else None


# -- the collection map ---------------------------------------------------------------------------------

MAP_KEY = "maps/collection_map.html"


def save_collection_map(storage: ArtsimStorage, html: str) -> str:
    """Store the map's page; returns where it lives."""
    storage.objects.write_bytes(MAP_KEY, html.encode("utf-8"))
    return storage.objects.uri(MAP_KEY)


# the chunked map (any size; served by `artsim serve` at /map): content-addressed chunks and
# details, then the manifest that names them, written last (readers reload on its stamp)
CHUNKED_MAP_KEY = "maps/collection_map"
MAP_MANIFEST_FILE = "manifest.json"
_MAP_PART = re.compile(r"^(chunks/[0-9a-f]{24}\.bin|details-[0-9a-f]{24}\.parquet)$")


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def save_chunked_map(storage: ArtsimStorage, manifest: dict[str, Any], chunks: dict[str, bytes],
                     details: pl.DataFrame) -> str:
    """Store the chunked map (`core.collection_map.chunks.build_chunked_map`): each chunk under
    `chunks/<content hash>.bin` (one already stored is left alone), the details as
    `details-<content hash>.parquet`, then `manifest.json` naming them. Parts the new manifest no
    longer names are removed afterwards (a reader that fetched the old manifest just before may
    miss a chunk: the page then says the map changed). Returns the manifest's location."""
    from artsim_pipeline.core.collection_map.chunks import manifest_json

    for name, blob in chunks.items():
        key = f"{CHUNKED_MAP_KEY}/chunks/{name}"
        if not storage.objects.exists(key):
            storage.objects.write_bytes(key, blob)
    data = _parquet_bytes(details)
    details_name = f"details-{hashlib.sha256(data).hexdigest()[:24]}.parquet"
    storage.objects.write_bytes(f"{CHUNKED_MAP_KEY}/{details_name}", data)
    manifest = {**manifest, "details": details_name}
    storage.objects.write_bytes(f"{CHUNKED_MAP_KEY}/{MAP_MANIFEST_FILE}", manifest_json(manifest))
    named = {f"chunks/{c['file']}" for c in manifest["chunks"]} | {details_name}
    for key in list(storage.objects.list_keys(CHUNKED_MAP_KEY)):
        part = key[len(CHUNKED_MAP_KEY) + 1:]
        if _MAP_PART.match(part) and part not in named:
            storage.objects.delete(key)
    return storage.objects.uri(f"{CHUNKED_MAP_KEY}/{MAP_MANIFEST_FILE}")


def read_map_manifest(storage: ArtsimStorage) -> dict[str, Any] | None:
    """The stored chunked map's manifest, or None when none is stored."""
    data = storage.objects.read_bytes(f"{CHUNKED_MAP_KEY}/{MAP_MANIFEST_FILE}")
    return json.loads(data) if data else None


def map_manifest_stamp(storage: ArtsimStorage) -> tuple | None:
    """What changes whenever the chunked map is stored again."""
    return storage.objects.stamp(f"{CHUNKED_MAP_KEY}/{MAP_MANIFEST_FILE}")


def read_map_part(storage: ArtsimStorage, name: str) -> bytes | None:
    """A chunk (`chunks/<hash>.bin`) or the details (`details-<hash>.parquet`) of the stored map,
    or None; any other name is refused (None), so no path can leave the map's folder. Parts are
    content-addressed: from S3 each is fetched once into the local cache."""
    if not isinstance(name, str) or not _MAP_PART.match(name):
        return None
    path = storage.local_file(f"{CHUNKED_MAP_KEY}/{name}")
    return path.read_bytes() if path is not None else None


def read_map_details(storage: ArtsimStorage, manifest: dict[str, Any]) -> pl.DataFrame | None:
    """The details table the manifest names (one row per point, by `row`), or None."""
    data = read_map_part(storage, str(manifest.get("details", "")))
    return pl.read_parquet(io.BytesIO(data)) if data is not None else None


# incremental state: the layout (coordinates + vector fingerprints) and the clusters' centroids,
# each with an info document naming the digest of the data it goes with (a pair torn by a crash
# reads as nothing stored, so the next run is a full one)
MAP_LAYOUT_KEY = "maps/collection_map/layout"
CLUSTERS_STATE_KEY = "models/clusters"


def _save_state(storage: ArtsimStorage, key: str, files: dict[str, bytes], info: dict[str, Any]) -> None:
    digests = {}
    for name, data in files.items():
        storage.objects.write_bytes(f"{key}/{name}", data)
        digests[name] = hashlib.sha256(data).hexdigest()
    body = {"info": info, "digests": digests}
    storage.objects.write_bytes(f"{key}/info.json", json.dumps(body, indent=2, sort_keys=True).encode("utf-8"))


def _load_state(storage: ArtsimStorage, key: str, names: tuple[str, ...]) -> tuple[dict[str, bytes], dict[str, Any]] | None:
    raw = storage.objects.read_bytes(f"{key}/info.json")
    if raw is None:
        return None
    body = json.loads(raw)
    files = {}
    for name in names:
        data = storage.objects.read_bytes(f"{key}/{name}")
        if data is None or hashlib.sha256(data).hexdigest() != body.get("digests", {}).get(name):
            return None
        files[name] = data
    return files, body.get("info", {})


def save_map_layout(storage: ArtsimStorage, layout) -> None:
    """Store the map's layout (`core.collection_map.placement.Layout`) for the next run."""
    _save_state(storage, MAP_LAYOUT_KEY, {"layout.parquet": _parquet_bytes(layout.points)}, layout.info)


def load_map_layout(storage: ArtsimStorage):
    """The stored `Layout`, or None (none stored, or torn)."""
    from artsim_pipeline.core.collection_map.placement import Layout

    state = _load_state(storage, MAP_LAYOUT_KEY, ("layout.parquet",))
    if state is None:
        return None
    files, info = state
    return Layout(pl.read_parquet(io.BytesIO(files["layout.parquet"])), info)


def save_cluster_state(storage: ArtsimStorage, state) -> None:
    """Store the clusters' state (`core.clusters.ClusterState`: labels, centroids, info)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(state.centroids, dtype=np.float32), allow_pickle=False)
    _save_state(storage, CLUSTERS_STATE_KEY, {"labels.parquet": _parquet_bytes(state.labels),
                                              "centroids.npy": buffer.getvalue()}, state.info)


def load_cluster_state(storage: ArtsimStorage):
    """The stored `ClusterState`, or None (none stored, or torn)."""
    import numpy as np

    from artsim_pipeline.core.clusters import ClusterState

    state = _load_state(storage, CLUSTERS_STATE_KEY, ("labels.parquet", "centroids.npy"))
    if state is None:
        return None
    files, info = state
    centroids = np.load(io.BytesIO(files["centroids.npy"]), allow_pickle=False)
    return ClusterState(pl.read_parquet(io.BytesIO(files["labels.parquet"])), centroids, info)
