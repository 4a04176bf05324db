"""`raw_images` parses only the records whose text changed (the URL memo) and plans in polars:
its outputs equal those of the former per-record code (kept below as the reference) on real
records served by the replay server, with the memo fresh, absent, damaged or of another version."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from types import SimpleNamespace

import polars as pl
import pytest
from dagster import build_asset_context

from artsim_pipeline.core import image_manifest
from artsim_pipeline.core.features import frame_fingerprint
from artsim_pipeline.core.images import ImageRejected, check_image, image_relpath
from artsim_pipeline.core.raw_store import content_hash
from artsim_pipeline.core.text import scrub_surrogates
from artsim_pipeline.defs.ingest.assets import RAW_IMAGES_SCHEMA, RawImagesConfig, raw_images
from artsim_pipeline.defs.metadata import markdown_table
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.clients.base import bounded_parallel_map
from artsim_pipeline_tests.defs.test_ingest_assets import live_resources, run


def reference_raw_images(context, config, raw_objects, museum_api, storage, tables):
    """The former body of `raw_images` (every record parsed, Python dicts), verbatim."""
    source = context.partition_key
    previous = tables.read_table("raw_images", source)
    client = museum_api.client(source)

    wanted: dict[tuple[str, str], None] = {}
    for source_id, raw in raw_objects.filter(pl.col("status") == "ok").select("source_id", "raw_json").iter_rows():
        try:
            url = client.image_url(json.loads(raw))
        except (ValueError, AttributeError, TypeError, RecursionError):
            continue
        if isinstance(url, str) and url:
            wanted[(source_id, scrub_surrogates(url)[0])] = None

    reusable: dict[tuple[str, str], dict] = {}
    if previous is not None:
        stored = artefacts.stored_images(storage) if config.verify_stored else None
        for row in previous.filter(pl.col("status") == "ok").iter_rows(named=True):
            if row["path"] and (stored is None or row["path"] in stored):
                reusable[(row["source_id"], row["url"])] = row
    to_fetch = [key for key in wanted if key not in reusable]

    def download(key: tuple[str, str]) -> dict:
        source_id, url = key
        row = {"source_id": source_id, "url": url, "sha256": None, "width": None, "height": None, "path": None, "error": None,
               "fetched_at": datetime.now(timezone.utc)}
        fetched = client.fetch_image(url)
        if fetched.content is None:
            return {**row, "status": fetched.status or ("not_found" if fetched.gone else "http_error"), "error": fetched.error}
        try:
            checked = check_image(fetched.content)
        except ImageRejected as exc:
            return {**row, "status": exc.status, "error": str(exc)}
        artefacts.write_image(storage, image_relpath(checked.sha256, checked.extension), fetched.content)
        return {**row, "status": "ok", "sha256": checked.sha256, "width": checked.width, "height": checked.height,
                "path": image_relpath(checked.sha256, checked.extension)}

    downloaded: list[dict] = []
    workers = getattr(getattr(client, "http", None), "policy", None)
    try:
        downloaded.extend(bounded_parallel_map(download, to_fetch, workers.max_workers if workers else 1))
    finally:
        client.close()

    rows = [reusable[key] for key in wanted if key in reusable] + downloaded
    current_ids = {source_id for source_id, _ in wanted}
    if previous is not None:
        rows += previous.filter(~pl.col("source_id").is_in(list(current_ids))).to_dicts()
    table = pl.DataFrame(rows, schema=RAW_IMAGES_SCHEMA).sort("source_id", "url") if rows else pl.DataFrame(schema=RAW_IMAGES_SCHEMA)
    key = ("source_id", "url")
    dropped = previous.select(key).join(table.select(key), on=list(key), how="anti") if previous is not None else None
    new_status = pl.DataFrame(downloaded, schema=RAW_IMAGES_SCHEMA)["status"].value_counts() if downloaded else None
    failures = {k: v for k, v in (dict(new_status.iter_rows()) if new_status is not None else {}).items() if k != "ok"}
    return SimpleNamespace(
        rows=pl.DataFrame(downloaded, schema=RAW_IMAGES_SCHEMA), deleted=dropped, total_rows=table.height,
        data_version=frame_fingerprint(table.select("source_id", "url", "status", "sha256")),
        metadata={
            "rows": table.height,
            "ok": table.filter(pl.col("status") == "ok").height,
            "downloaded_this_run": len(downloaded) - sum(failures.values()),
            "reused": len(wanted) - len(to_fetch),
            "failed_this_run": sum(failures.values()),
            "failures_by_status": failures,
            "preview": markdown_table(table, ["source_id", "status", "width", "height", "sha256", "error"]).value,
        })


def new_raw_images(resources, raw, verify_stored=False):
    out = raw_images(context=build_asset_context(partition_key="met"), config=RawImagesConfig(verify_stored=verify_stored),
                     raw_objects=raw, museum_api=resources["museum_api"], storage=resources["storage"], tables=resources["tables"])
    meta = {k: v.value if hasattr(v, "value") else v for k, v in out.metadata.items() if k != "images_per_second"}
    return SimpleNamespace(rows=out.value.rows, deleted=out.value.deleted, total_rows=out.value.total_rows,
                           data_version=out.data_version.value, metadata=meta)


def comparable(result) -> tuple:
    key = ["source_id", "url"]
    rows = result.rows.drop("fetched_at").sort(key)  # downloads finish in any order, at their own time
    deleted = None if result.deleted is None else result.deleted.sort(key)
    return rows, deleted, result.total_rows, result.data_version, result.metadata


def assert_same(new, reference) -> None:
    got, want = comparable(new), comparable(reference)
    assert got[0].schema == want[0].schema and got[0].equals(want[0], null_equal=True)
    assert (got[1] is None) == (want[1] is None) and (got[1] is None or got[1].equals(want[1], null_equal=True))
    assert got[2:] == want[2:]


def set_json(raw: pl.DataFrame, source_id: str, text: str, **columns) -> pl.DataFrame:
    row = {**raw.filter(pl.col("source_id") == source_id).row(0, named=True), "raw_json": text,
           "content_hash": content_hash(text), **columns}
    return pl.concat([raw.filter(pl.col("source_id") != source_id), pl.DataFrame([row], schema=raw.schema)])


@pytest.fixture
def ingested(artsim_home, replay):
    """A Met partition ingested live (two images failed on a corrupt answer), and a next
    `raw_objects` with every kind of change."""
    replay.faults.add("corrupt_image", r"/images/", count=2)
    resources = live_resources(artsim_home, replay)
    first = run(resources, "met")
    assert first["raw_images"]["failed_this_run"] == 2
    store = resources["tables"]
    raw = store.read_table("raw_objects", "met")
    images = store.read_table("raw_images", "met")
    ok_images = images.filter(pl.col("status") == "ok")["source_id"].to_list()
    failed = images.filter(pl.col("status") != "ok")["source_id"].to_list()
    moved, gone, retitled, unparseable, private, surrogate, shared = ok_images[:7]
    records = {sid: json.loads(text) for sid, text in raw.select("source_id", "raw_json").iter_rows()}
    other_url = records[ok_images[8]]["primaryImageSmall"]
    edits = {
        moved: {**records[moved], "primaryImageSmall": other_url},  # its image URL changes (to one already stored)
        retitled: {**records[retitled], "title": "retitled"},  # a new text, the same image
        private: {**records[private], "isPublicDomain": False},  # no image any more
        shared: {**records[shared], "primaryImageSmall": records[moved]["primaryImageSmall"]},
    }
    changed = raw
    for sid, record in edits.items():
        changed = set_json(changed, sid, json.dumps(record))
    changed = set_json(changed, unparseable, "{not json")
    changed = set_json(changed, surrogate, json.dumps({**records[surrogate], "primaryImageSmall": "http://x/\udfff.jpg"}))
    changed = changed.with_columns(status=pl.when(pl.col("source_id") == gone).then(pl.lit("gone")).otherwise("status"))
    new = {**records[ok_images[9]], "objectID": 99999999}  # a new record
    changed = pl.concat([changed, pl.DataFrame([{**raw.row(0, named=True), "source_id": "99999999", "raw_json": json.dumps(new),
                                                 "content_hash": content_hash(json.dumps(new))}], schema=raw.schema)])
    assert failed and all(sid in changed["source_id"].to_list() for sid in failed)
    return resources, raw, changed


def twin(artsim_home, replay):
    """A copy of the home (the reference runs there, on the same stored state)."""
    copy = artsim_home.parent / "reference_home"
    shutil.copytree(artsim_home, copy)
    return live_resources(copy, replay)


@pytest.mark.parametrize("memo", ["kept", "absent", "damaged", "other_version"])
def test_outputs_equal_the_former_code_for_every_kind_of_change(ingested, artsim_home, replay, memo):
    resources, _, changed = ingested
    key = artsim_home / "cache" / "raw_images" / "met.parquet"
    assert key.is_file()
    if memo == "absent":
        key.unlink()
    elif memo == "damaged":
        key.write_bytes(key.read_bytes()[:100])
    elif memo == "other_version":
        frame = pl.read_parquet(key).with_columns(url=pl.lit("http://wrong/x.jpg"))
        artefacts.write_url_memo(resources["storage"], "met", frame, "another version")
    reference_resources = twin(artsim_home, replay)
    new = new_raw_images(resources, changed)
    want = reference_raw_images(build_asset_context(partition_key="met"), RawImagesConfig(), changed,
                                reference_resources["museum_api"], reference_resources["storage"], reference_resources["tables"])
    assert_same(new, want)
    assert new.metadata["downloaded_this_run"] >= 3 and new.deleted.height >= 2  # the retried, the moved, the new
    # and again from the memo this run wrote, with the image store verified
    for verify in (False, True):
        again = new_raw_images(resources, changed, verify_stored=verify)
        want = reference_raw_images(build_asset_context(partition_key="met"), RawImagesConfig(verify_stored=verify), changed,
                                    reference_resources["museum_api"], reference_resources["storage"], reference_resources["tables"])
        assert_same(again, want)


def counting_json(monkeypatch) -> list[str]:
    parsed: list[str] = []
    monkeypatch.setattr(image_manifest, "json", SimpleNamespace(loads=lambda text: parsed.append(text) or json.loads(text)))
    return parsed


def test_a_run_parses_only_the_changed_record_and_a_new_code_version_parses_all(ingested, monkeypatch):
    resources, raw, _ = ingested
    ok = raw.filter(pl.col("status") == "ok").height
    parsed = counting_json(monkeypatch)
    same = new_raw_images(resources, raw)
    assert parsed == [] and same.rows.height == 2  # the two failed images are retried; no record parsed
    sid = raw.filter(pl.col("status") == "ok")["source_id"][5]
    record = json.loads(raw.filter(pl.col("source_id") == sid)["raw_json"].item())
    changed = set_json(raw, sid, json.dumps({**record, "title": "retitled"}))
    first = new_raw_images(resources, changed)
    assert parsed == [changed.filter(pl.col("source_id") == sid)["raw_json"].item()]
    assert first.metadata["reused"] == same.metadata["reused"] and first.data_version == same.data_version
    parsed.clear()
    new_raw_images(resources, changed)
    assert parsed == []  # the memo was updated
    monkeypatch.setattr(image_manifest, "URL_MEMO_FORMAT", "another format")
    again = new_raw_images(resources, changed)
    assert len(parsed) == ok and again.data_version == same.data_version


def test_a_damaged_memo_is_ignored_and_replaced(ingested, artsim_home, monkeypatch):
    resources, raw, _ = ingested
    before = new_raw_images(resources, raw)
    key = artsim_home / "cache" / "raw_images" / "met.parquet"
    key.write_bytes(b"PAR1 not a parquet file")
    parsed = counting_json(monkeypatch)
    after = new_raw_images(resources, raw)
    assert len(parsed) == raw.filter(pl.col("status") == "ok").height
    assert after.data_version == before.data_version and after.metadata == before.metadata
    assert after.total_rows == before.total_rows
    parsed.clear()
    new_raw_images(resources, raw)
    assert parsed == [] and pl.read_parquet(key).height == raw.filter(pl.col("status") == "ok").height


def test_the_memo_is_not_written_when_nothing_changed(ingested, artsim_home):
    resources, raw, _ = ingested
    new_raw_images(resources, raw)
    key = artsim_home / "cache" / "raw_images" / "met.parquet"
    key.touch()
    stamp = key.stat().st_mtime_ns
    new_raw_images(resources, raw)
    assert key.stat().st_mtime_ns == stamp


def test_a_memo_the_storage_cannot_read_or_write_costs_a_parse_not_the_run(ingested, monkeypatch):
    resources, raw, _ = ingested
    before = new_raw_images(resources, raw)

    def storage_down(*args, **kwargs):
        raise OSError("storage unavailable")

    monkeypatch.setattr(artefacts, "read_url_memo", storage_down)
    monkeypatch.setattr(artefacts, "write_url_memo", storage_down)
    parsed = counting_json(monkeypatch)
    after = new_raw_images(resources, raw)  # the run's rows are still handed over to be stored
    assert len(parsed) == raw.filter(pl.col("status") == "ok").height
    assert after.data_version == before.data_version and after.total_rows == before.total_rows
