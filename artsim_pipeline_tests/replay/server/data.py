"""The recorded museum records of the shared data folder that the replay server serves."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# The documented /departments body, used when the shared data directory is not available.
_FALLBACK_DEPARTMENTS: dict[str, Any] = {
    "departments": [
        {"departmentId": i, "displayName": n}
        for i, n in [
            (1, "American Decorative Arts"),
            (3, "Ancient Near Eastern Art"),
            (4, "Arms and Armor"),
            (5, "Arts of Africa, Oceania, and the Americas"),
            (6, "Asian Art"),
            (7, "The Cloisters"),
            (8, "The Costume Institute"),
            (9, "Drawings and Prints"),
            (10, "Egyptian Art"),
            (11, "European Paintings"),
            (12, "European Sculpture and Decorative Arts"),
            (13, "Greek and Roman Art"),
            (14, "Islamic Art"),
            (15, "The Robert Lehman Collection"),
            (16, "The Libraries"),
            (17, "Medieval Art"),
            (18, "Musical Instruments"),
            (19, "Photographs"),
            (21, "Modern Art"),
        ]
    ]
}


def shared_data_dir() -> Path:
    """The shared data directory: ``$ARTSIM_SHARED_DATA`` or ``<repo>/../shared/data`` (`settings`)."""
    from artsim_pipeline import settings

    return settings.shared_data_dir()


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_shared_met_records(limit: int | None = None) -> list[dict]:
    """Met ``/objects/{id}`` records from the shared data, unique by ``objectID``.

    The four records in ``objects_exact.jsonl`` (exactly as the API returned them) come first
    and win over their flattened copies in ``objects.jsonl``; the rest keep file order (for
    repeated ids there, the latest ``metadataDate`` wins). ``limit`` keeps the first N.
    """
    met = shared_data_dir() / "met"
    exact = _read_jsonl(met / "objects_exact.jsonl")
    by_id: dict[int, dict] = {r["objectID"]: r for r in exact}
    exact_ids = set(by_id)
    for rec in _read_jsonl(met / "objects.jsonl"):
        oid = rec["objectID"]
        if oid in exact_ids:
            continue
        old = by_id.get(oid)
        if old is None or _parse_iso(rec.get("metadataDate")) > _parse_iso(old.get("metadataDate")):
            by_id[oid] = rec
    records = list(by_id.values())
    return records if limit is None else records[:limit]


def load_shared_smk_records() -> list[dict]:
    """The unique SMK items in ``smk/responses/*.json``, sorted by ``object_number``.

    Both search envelopes and single-object bodies carry ``items``; when one object appears
    several times (e.g. KMS1 in 2019 and 2026) the item with the latest ``modified`` wins.
    """
    by_number: dict[str, dict] = {}
    for path in sorted((shared_data_dir() / "smk" / "responses").glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        for item in body.get("items") or []:
            num = item.get("object_number")
            if num is None:
                continue
            old = by_number.get(num)
            if old is None or _parse_iso(item.get("modified")) > _parse_iso(old.get("modified")):
                by_number[num] = item
    return [by_number[k] for k in sorted(by_number)]


def load_shared_departments() -> dict[str, Any]:
    """The Met ``/departments`` body from the shared data (the documented list if absent)."""
    path = shared_data_dir() / "met" / "responses" / "departments.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return copy.deepcopy(_FALLBACK_DEPARTMENTS)


_MIN_DT = datetime.min.replace(tzinfo=timezone.utc)


def _parse_iso(value: str | None) -> datetime:
    """Parse an API timestamp ("2023-02-07T04:46:51.34Z", 0-3 fractional digits, or a date)."""
    if not value:
        return _MIN_DT
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return _MIN_DT
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
