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
| fetch journal | `checkpoints/raw_objects/<source>.jsonl` (always local: only a crashed run on the same machine resumes from it) | `raw_objects` |
| curator judgments | `feedback/judgments.jsonl` (a local journal, `resources/journal.py`); on S3 one object per judgment, `feedback/judgments/<judgment_id>.json`, never overwritten | `artsim serve` |
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from artsim_pipeline.core import feedback
from artsim_pipeline.core.raw_store import FetchResult
from artsim_pipeline.resources import journal
from artsim_pipeline.resources.objects import LocalObjectStore
from artsim_pipeline.resources.storage import ArtsimStorage

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


class FetchCheckpoint:
    """An append-only JSON-lines journal of fetch results, so a killed run resumes where it stopped.

    Each result is flushed as soon as it arrives. On the next run, entries that already reached
    the stored table are dropped (`compact`) and the rest are reused instead of fetched again.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = None

    @classmethod
    def of(cls, storage: ArtsimStorage, asset: str, partition: str) -> FetchCheckpoint:
        return cls(checkpoint_path(storage, asset, partition))

    def load(self) -> list[FetchResult]:
        if not self.path.exists():
            return []
        results = []
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    entry = json.loads(line.decode("utf-8"))
                    entry["fetched_at"] = datetime.fromisoformat(entry["fetched_at"])
                    results.append(FetchResult(**entry))
                except (ValueError, TypeError, KeyError, RecursionError):
                    continue  # a line cut short by the crash (or damaged): that fetch is simply redone
        return results

    def compact(self, stored: pl.DataFrame | None) -> list[FetchResult]:
        """Keep only results worth reusing that the stored table does not hold yet; returns them.

        `ok` and `gone` answers are final and reused; `error` answers are dropped so that the
        resumed run tries those objects again.
        """
        stored_keys: set[tuple[str, str | None]] = set()
        if stored is not None and stored.height:
            for source_id, status, digest in stored.select("source_id", "status", "content_hash").iter_rows():
                stored_keys.add((source_id, digest if status == "ok" else status))
        pending = []
        for result in self.load():
            key = (result.source_id, result.content_hash if result.status == "ok" else result.status)
            if result.status != "error" and key not in stored_keys:
                pending.append(result)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for result in pending:
                handle.write(self._line(result))
        os.replace(tmp, self.path)
        return pending

    @staticmethod
    def _line(result: FetchResult) -> str:
        entry = dict(result.__dict__)
        entry["fetched_at"] = result.fetched_at.isoformat()
        return json.dumps(entry, ensure_ascii=True) + "\n"  # ASCII: any text round-trips, whatever it holds

    def append(self, result: FetchResult) -> None:
        if self._handle is None:
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(self._line(result))
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


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
