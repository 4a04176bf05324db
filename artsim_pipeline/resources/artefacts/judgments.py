"""Curator judgments: a local journal under a home; on S3 one object per judgment.

Part of the storage layout: `resources/artefacts/__init__.py` has the table of keys."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from artsim_pipeline.core import feedback
from artsim_pipeline.resources import journal
from artsim_pipeline.resources.objects import LocalObjectStore
from artsim_pipeline.resources.storage import ArtsimStorage


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
