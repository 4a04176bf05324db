"""The storage layout (`resources/artefacts.py`): each stored artefact written and read back
where the layout says, locally (the S3 forms: `prod/`)."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from PIL import Image

from artsim_pipeline.core.images import check_image, image_relpath
from artsim_pipeline.core.raw_store import FetchResult, merge_results
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.artefacts import FetchCheckpoint
from artsim_pipeline.resources.storage import ArtsimStorage


def ok(source_id, text):
    return FetchResult(source_id, "ok", raw_json=text, modified="2024-01-01")


def png_bytes(width=32, height=16):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_valid_image_is_stored_once_by_content(tmp_path):
    storage = ArtsimStorage(home=str(tmp_path))
    content = png_bytes()
    checked = check_image(content)
    relpath = image_relpath(checked.sha256, checked.extension)
    artefacts.write_image(storage, relpath, content)
    first = artefacts.image_file(storage, relpath)
    artefacts.write_image(storage, relpath, content)
    second = artefacts.image_file(storage, relpath)
    assert first == second and first.read_bytes() == content
    assert first.name.startswith(checked.sha256)
    assert first.parent.parent == artefacts.local_images_dir(tmp_path)
    assert artefacts.stored_images(storage) == {relpath}


def test_fetch_state_round_trips_under_state(tmp_path):
    storage = ArtsimStorage(home=str(tmp_path))
    assert artefacts.read_state(storage, "raw_objects/met") == {}
    artefacts.write_state(storage, "raw_objects/met", {"cursor": "2024-01-01"})
    assert artefacts.read_state(storage, "raw_objects/met") == {"cursor": "2024-01-01"}
    assert (tmp_path / "state" / "raw_objects" / "met.json").is_file()


def test_the_fetch_journal_lives_under_the_local_home(tmp_path):
    storage = ArtsimStorage(home=str(tmp_path))
    assert FetchCheckpoint.of(storage, "raw_objects", "met").path == tmp_path / "checkpoints" / "raw_objects" / "met.jsonl"


def test_checkpoint_survives_a_cut_line_and_compacts_against_the_stored_table(tmp_path):
    path = tmp_path / "cp.jsonl"
    cp = FetchCheckpoint(path)
    cp.append(ok("1", '{"a":1}'))
    cp.append(ok("2", '{"a":2}'))
    cp.append(FetchResult("3", "error", error="timeout"))
    cp.close()
    with path.open("a") as handle:
        handle.write('{"source_id": "4", "sta')  # the process died mid-write
    assert [r.source_id for r in FetchCheckpoint(path).load()] == ["1", "2", "3"]
    stored, _ = merge_results(None, [ok("1", '{"a":1}')])
    pending = FetchCheckpoint(path).compact(stored)
    # 1 is already stored, 3 failed (so it is fetched again): only 2 is reused
    assert [r.source_id for r in pending] == ["2"]
    assert isinstance(pending[0].fetched_at, datetime) and pending[0].fetched_at.tzinfo == timezone.utc
    assert [r.source_id for r in FetchCheckpoint(path).load()] == ["2"]
