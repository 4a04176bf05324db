"""Real Met and SMK records from ``../shared/data`` (override with ``ARTSIM_SHARED_DATA``) as
``raw_objects`` frames, and the checks every normalisation must pass; shared by the
``test_normalise*`` modules."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from functools import cache

import polars as pl
import pytest

from artsim_pipeline.core.normalise import normalise, normalise_smk
from artsim_pipeline.core.schema import ARTWORKS_SCHEMA, QUARANTINE_SCHEMA
from artsim_pipeline_tests.replay.server import shared_data_dir

SHARED_DATA = shared_data_dir()
needs_shared_records = pytest.mark.skipif(
    not (SHARED_DATA / "met" / "objects.jsonl").exists(),
    reason=f"real museum records not found under {SHARED_DATA} (set ARTSIM_SHARED_DATA)",
)

FETCHED = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)


@cache
def met_lines() -> tuple[str, ...]:
    return tuple((SHARED_DATA / "met" / "objects.jsonl").read_text(encoding="utf-8").splitlines())


@cache
def met_exact() -> dict[int, dict]:
    lines = (SHARED_DATA / "met" / "objects_exact.jsonl").read_text(encoding="utf-8").splitlines()
    return {rec["objectID"]: rec for rec in map(json.loads, lines)}


def met_record(object_id: int) -> dict:
    """A deep copy of a real Met record (exact API records first, then the animals set)."""
    if object_id in met_exact():
        return copy.deepcopy(met_exact()[object_id])
    for line in met_lines():
        if line.startswith(f'{{"objectID": {object_id},'):
            return json.loads(line)
    raise KeyError(object_id)


def smk_file(name: str) -> dict:
    return json.loads((SHARED_DATA / "smk" / "responses" / name).read_text(encoding="utf-8"))


def smk_item(object_number: str, file: str | None = None) -> dict:
    files = [file] if file else [
        "search_public_domain_has_image_2019.json",
        "search_title_interior.json",
        "object_KMSst28_no_image.json",
        "object_KMS1_fall_of_the_titans.json",
        "object_KMS1_2019.json",
    ]
    for name in files:
        for item in smk_file(name)["items"]:
            if item["object_number"] == object_number:
                return copy.deepcopy(item)
    raise KeyError(object_number)


def raw_frame(records: list, source_ids: list[str | None] | None = None, **columns) -> pl.DataFrame:
    """A ``raw_objects`` frame; records may be dicts (serialised) or raw JSON text."""
    texts = [r if isinstance(r, str) or r is None else json.dumps(r, ensure_ascii=False)
             for r in records]  # fmt: skip
    if source_ids is None:
        source_ids = [_guess_id(t) for t in texts]
    n = len(texts)
    data = {
        "source_id": source_ids,
        "raw_json": texts,
        "fetched_at": columns.pop("fetched_at", [FETCHED] * n),
        "content_hash": [hashlib.sha256((t or "").encode()).hexdigest() for t in texts],
        "status": columns.pop("status", ["ok"] * n),
        "error": [None] * n,
    }
    return pl.DataFrame(
        data,
        schema={
            "source_id": pl.String,
            "raw_json": pl.String,
            "fetched_at": pl.Datetime("us", "UTC"),
            "content_hash": pl.String,
            "status": pl.String,
            "error": pl.String,
        },
    )


def _guess_id(text: str | None) -> str | None:
    try:
        obj = json.loads(text or "")
    except ValueError:
        return None
    if isinstance(obj, dict):
        if "objectID" in obj:
            return str(obj["objectID"])
        if "object_number" in obj:
            return obj["object_number"]
    return None


def one(frame: pl.DataFrame) -> dict:
    assert frame.height == 1, frame
    return frame.row(0, named=True)


def met_one(record, source_id: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    return normalise("met", raw_frame([record], None if source_id is None else [source_id]))


def assert_invariant(raw: pl.DataFrame, artworks: pl.DataFrame, quarantine: pl.DataFrame) -> None:
    ok = raw.filter(pl.col("status") == "ok").height
    assert artworks.height + quarantine.height == ok
    assert artworks.schema == pl.Schema(ARTWORKS_SCHEMA)
    assert quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert artworks.get_column("artwork_id").is_unique().all()


def smk_one(item, source_id: str | None = None) -> dict:
    artworks, quarantine = normalise_smk(
        raw_frame([item], None if source_id is None else [source_id])
    )
    assert quarantine.height == 0, quarantine.select("rule", "reason").to_dicts()
    return one(artworks)
