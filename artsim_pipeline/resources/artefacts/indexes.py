"""The similar-works index, the similarity heads and the search index.

Part of the storage layout: `resources/artefacts/__init__.py` has the table of keys."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from artsim_pipeline.resources.artefacts.row_file import RowFile
from artsim_pipeline.resources.storage import ArtsimStorage

if TYPE_CHECKING:
    from artsim_pipeline.core.ann import AnnConfig, AnnIndex
    from artsim_pipeline.core.text_search import KeywordIndex


# -- the similar-works index (ann_index) ----------------------------------------------------------------

ANN_INDEX_KEY = "indexes/ann_index"
ANN_INDEX_FILE, ANN_ID_MAP_FILE, ANN_BUILD_INFO_FILE = "index.bin", "id_map.parquet", "build_info.json"
# a two-stage index (`core.ann.reduction`) also has these: the full vectors as float16 rows by
# label (rows read as queries need them) and the projection hnswlib's vectors went through
ANN_FULL_VECTORS_FILE, ANN_PROJECTION_FILE = "full_vectors.f16.npy", "projection.npy"


def write_ann_index(index: AnnIndex, directory: str | os.PathLike[str]) -> Path:
    """Write index.bin, id_map.parquet, build_info.json (and, for a two-stage index,
    full_vectors.f16.npy and projection.npy) into `directory` atomically: everything goes to a
    temporary sibling directory that is then renamed into place (an existing directory is moved
    aside first and removed after the swap)."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with index.parts() as (hnsw, id_map, info, arrays):
            hnsw.save_index(str(tmp / ANN_INDEX_FILE))
            id_map.write_parquet(tmp / ANN_ID_MAP_FILE)
            if arrays:
                np.save(tmp / ANN_FULL_VECTORS_FILE, arrays["full"], allow_pickle=False)
                np.save(tmp / ANN_PROJECTION_FILE, arrays["projection"], allow_pickle=False)
                info["full_vectors_file_bytes"] = (tmp / ANN_FULL_VECTORS_FILE).stat().st_size
            info["index_file_bytes"] = (tmp / ANN_INDEX_FILE).stat().st_size
            # what readers key on (near_duplicates' reuse, artsim serve's reload): two writes in
            # one second of the same counts would otherwise leave identical build info
            info["write_id"] = uuid.uuid4().hex
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
    num_threads, oversample); build parameters come from build_info.json. A two-stage index's
    full vectors stay in their file (`row_file.RowFile`): queries read only the rows they
    re-rank, and an update works on a copy in memory, never the file."""
    import hnswlib

    from artsim_pipeline.core.ann import AnnIndex

    d = Path(directory)
    info = json.loads((d / ANN_BUILD_INFO_FILE).read_text(encoding="utf-8"))
    hnsw = hnswlib.Index(space=AnnIndex.stored_config(info).space, dim=int(info.get("search_dim", info["dim"])))
    hnsw.load_index(str(d / ANN_INDEX_FILE), max_elements=int(info.get("max_elements", 0)), allow_replace_deleted=True)
    arrays = {}
    if (d / ANN_FULL_VECTORS_FILE).exists():
        arrays = {"full": RowFile(d / ANN_FULL_VECTORS_FILE),
                  "projection": np.load(d / ANN_PROJECTION_FILE, allow_pickle=False)}
    try:
        return AnnIndex.from_parts(hnsw, pl.read_parquet(d / ANN_ID_MAP_FILE), info, config, arrays)
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
# each work's keyword tokens and the fields they came from (`core.keyword_index.DOCUMENT_COLUMNS`),
# with the tokeniser's signature in the file's metadata: what the next build reuses
KEYWORD_DOCUMENTS_FILE = "documents.parquet"
_TOKENIZER_KEY = "artsim.tokenizer"
# search_info.json: the write id of each vector part it was written with (the same id is in that
# part's build_info.json), and the entries that describe the text part as written then (its recall
# figure): a part replaced by a write that never got to search_info.json does not carry them over
PART_WRITE_IDS, PART_WRITE_ID = "part_write_ids", "search_part_write_id"
MEASURED_ON_TEXT_PART = ("text_recall",)


@dataclass
class StoredSearchIndex:
    """What `search_index` builds on: the last stored index's info, its vector indexes by part,
    and its keyword documents with their tokeniser's signature (None, and `documents_note`
    saying why, when there are none to reuse)."""

    info: dict[str, Any] = field(default_factory=dict)
    vector_indexes: dict[str, AnnIndex] = field(default_factory=dict)
    documents: pl.DataFrame | None = None
    tokenizer: str | None = None
    documents_note: str | None = "no search index stored"


def write_keyword_index(keyword: KeywordIndex, directory: str | os.PathLike[str]) -> None:
    """The BM25 index (bm25s' files), its artwork ids (`ids.parquet`) and, when it has them, its
    documents (`documents.parquet`) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keyword.retriever.save(str(directory), show_progress=False)
    pl.DataFrame({"artwork_id": keyword.ids}, schema={"artwork_id": pl.String}).write_parquet(directory / KEYWORD_IDS_FILE)
    if keyword.documents is not None:
        keyword.documents.write_parquet(directory / KEYWORD_DOCUMENTS_FILE, metadata={_TOKENIZER_KEY: keyword.tokenizer or ""})


def read_keyword_index(directory: str | os.PathLike[str]) -> KeywordIndex:
    """A keyword index written by `write_keyword_index` (without its documents: searching needs
    none; `read_keyword_documents` reads them)."""
    import bm25s

    from artsim_pipeline.core.text_search import KeywordIndex

    retriever = bm25s.BM25.load(str(directory), show_progress=False)
    return KeywordIndex(pl.read_parquet(directory / KEYWORD_IDS_FILE)["artwork_id"].to_list(), retriever)


def read_keyword_documents(directory: str | os.PathLike[str]) -> tuple[pl.DataFrame | None, str | None, str | None]:
    """(documents, tokeniser signature, None) kept by `write_keyword_index`, or (None, None, why
    not) when there are none or they cannot be read: they are a cache, the next build makes them
    again."""
    from artsim_pipeline.core.keyword_index import DOCUMENT_COLUMNS

    path = Path(directory) / KEYWORD_DOCUMENTS_FILE
    if not path.exists():
        return None, None, "no kept tokens"
    try:
        signature = pl.read_parquet_metadata(path).get(_TOKENIZER_KEY)
        documents = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        return None, None, f"kept tokens unreadable ({type(exc).__name__}: {exc})"
    expected = {"artwork_id": pl.String, "source": pl.String, "tokens": pl.List(pl.String)}
    if {c: documents.schema.get(c) for c in DOCUMENT_COLUMNS} != expected:
        return None, None, f"kept tokens have columns {dict(documents.schema)}, not {expected}"
    return documents, signature, None


def write_search_index(directory: str | os.PathLike[str], keyword: KeywordIndex, indexes: dict[str, AnnIndex],
                       info: dict[str, Any], unchanged: Collection[str] = ()) -> None:
    """The keyword index and the vector indexes (by part: `core.text_search.TEXT_DIR`,
    `IMAGE_DIR`) into `directory`: each part replaced whole (written beside, then renamed), but
    the vector parts named in `unchanged` (read from this directory and not changed since) left
    as they are; parts no longer built removed, and search_info.json (what readers reload on)
    written last, with a write id of its own and the write id of each vector part (a part written
    here gets a new one in its build info: `PART_WRITE_IDS`)."""
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
    part_write_ids = {}
    for part in (ts.TEXT_DIR, ts.IMAGE_DIR):
        if part in indexes and part not in unchanged:
            indexes[part].build_info[PART_WRITE_ID] = uuid.uuid4().hex
            write_ann_index(indexes[part], directory / part)
        elif part not in indexes and (directory / part).exists():
            shutil.rmtree(directory / part)
        if part in indexes:
            part_write_ids[part] = indexes[part].build_info.get(PART_WRITE_ID)
    info = {**info, PART_WRITE_IDS: part_write_ids, "write_id": uuid.uuid4().hex,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
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


def stored_search_index(storage: ArtsimStorage, config: AnnConfig | None = None) -> StoredSearchIndex:
    """The search index last stored (fetched once from S3 when the storage is remote), as what
    `search_index` updates incrementally; empty when none is stored. The info's entries about the
    text part (`MEASURED_ON_TEXT_PART`: its recall figure) are left out unless the stored text part
    is the one the info was written with: a run stopped between the two leaves a newer part."""
    from artsim_pipeline.core import text_search as ts

    directory = storage.fetch_dir(SEARCH_INDEX_KEY)
    if directory is None:
        return StoredSearchIndex()
    try:  # what it records (the last recall figure) is measured again when it cannot be read
        info = json.loads((directory / SEARCH_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    vectors = {part: read_ann_index(directory / part, config) for part in (ts.TEXT_DIR, ts.IMAGE_DIR) if _is_ann_dir(directory / part)}
    text_write_id = vectors[ts.TEXT_DIR].build_info.get(PART_WRITE_ID) if ts.TEXT_DIR in vectors else None
    if text_write_id is None or (info.get(PART_WRITE_IDS) or {}).get(ts.TEXT_DIR) != text_write_id:
        info = {k: v for k, v in info.items() if k not in MEASURED_ON_TEXT_PART}
    documents, tokenizer, note = read_keyword_documents(directory / ts.KEYWORD_DIR)
    return StoredSearchIndex(info, vectors, documents, tokenizer, note)


def stored_search_vector_indexes(storage: ArtsimStorage, config: AnnConfig | None = None) -> dict[str, AnnIndex]:
    """The vector indexes of the search index last stored, by part (empty when none is stored)."""
    return stored_search_index(storage, config).vector_indexes


def save_search_index(storage: ArtsimStorage, keyword: KeywordIndex, indexes: dict[str, AnnIndex], info: dict[str, Any],
                      unchanged: Collection[str] = ()) -> str:
    """Store the search index (`write_search_index`); returns where it lives."""
    with storage.staged_dir(SEARCH_INDEX_KEY) as directory:
        write_search_index(directory, keyword, indexes, info, unchanged)
    return storage.objects.uri(SEARCH_INDEX_KEY)


def load_search_index(storage: ArtsimStorage):
    """`read_search_index` of the stored search index, or FileNotFoundError when none is stored."""
    directory = storage.fetch_dir(SEARCH_INDEX_KEY)
    if directory is None or not (directory / SEARCH_INFO_FILE).exists():
        raise FileNotFoundError(f"no search_index under {storage.objects.uri(SEARCH_INDEX_KEY)}")
    return read_search_index(directory)


_INDEX_INFO_KEYS = (f"{ANN_INDEX_KEY}/{ANN_BUILD_INFO_FILE}", f"{SEARCH_INDEX_KEY}/{SEARCH_INFO_FILE}")


def index_stamps(storage: ArtsimStorage) -> tuple:
    """What changes whenever `ann_index` or `search_index` is stored again, one stat (a HEAD on
    S3) per index: the version of its info file (locally inode, mtime and size: each write renames
    a new file in; on S3 the ETag). A new file can get a freed inode back, so a reader that must
    not miss a write also checks `index_fingerprint` now and then."""
    return tuple(storage.objects.version(key) for key in _INDEX_INFO_KEYS)


def _info_digest(storage: ArtsimStorage, key: str) -> bytes | None:
    """The sha256 of a stored index's info file, None when there is none. Each write of an index
    writes a new write id into its info file, so the digest changes with every stored change."""
    data = storage.objects.read_bytes(key)
    return None if data is None else hashlib.sha256(data).digest()


def index_fingerprint(storage: ArtsimStorage) -> str:
    """A digest of both indexes' info files' contents (a few KB)."""
    digest = hashlib.sha256()
    for key in _INDEX_INFO_KEYS:
        digest.update(_info_digest(storage, key) or b"-")
    return digest.hexdigest()


def ann_index_stamp(storage: ArtsimStorage) -> str | None:
    """A digest of the stored `ann_index`'s build info, or None when none is stored. Reads one
    small file, not the index."""
    digest = _info_digest(storage, f"{ANN_INDEX_KEY}/{ANN_BUILD_INFO_FILE}")
    return None if digest is None else digest.hex()[:16]
