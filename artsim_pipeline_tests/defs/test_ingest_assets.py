"""`raw_objects` and `raw_images` materialised through Dagster: sample snapshot and live clients
against the replay server, with faults, incremental re-runs and a killed-and-resumed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import materialize

from artsim_pipeline.defs.ingest.assets import raw_images, raw_objects
from artsim_pipeline.resources.io_manager import PolarsParquetIOManager
from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore

REPO = Path(__file__).resolve().parents[2]
# a generous timeout: tests count requests, and a loaded machine's slow answer must not be retried
# (the test of a "timeout" fault sets a short one itself)
FAST = dict(requests_per_second=400.0, burst=20, max_workers=8, timeout_s=10.0, max_retries=4,
            backoff_base_s=0.01, backoff_max_s=0.05, firewall_cooldown_s=0.3)
SHORT_TIMEOUT_S = 3.0  # gives up on a "timeout" fault holding its answer for twice as long


def live_resources(home: Path, server, **overrides) -> dict:
    tables = TableStore(base_dir=str(home / "storage"))
    return {
        "tables": tables,
        "io_manager": PolarsParquetIOManager(store=tables),
        "storage": ArtsimStorage(home=str(home)),
        "museum_api": MuseumApiResource(mode="live", met_base_url=server.met_base_url, smk_base_url=server.smk_base_url, **{**FAST, **overrides}),
    }


def run(resources, partition, assets=(raw_objects, raw_images)):
    result = materialize(list(assets), partition_key=partition, resources=resources)
    assert result.success
    materializations = [event.materialization for event in result.get_asset_materialization_events()]
    return {m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()} for m in materializations}


def test_sample_environment_ingests_both_sources_and_reruns_change_nothing(artsim_home):
    from artsim_pipeline.definitions import build_defs

    defs = build_defs("sample")
    resources = defs.resources
    for source in ("met", "smk"):
        first = run(resources, source)
        assert first["raw_objects"]["this_run_new"] == first["raw_objects"]["rows"] > 0
        second = run(resources, source)
        assert second["raw_objects"]["rows"] == first["raw_objects"]["rows"]
        assert second["raw_objects"]["this_run_new"] == 0 and second["raw_objects"]["this_run_changed"] == 0
        # Met: nothing changed since the cursor, so nothing is fetched; SMK: a full listing, all unchanged
        if source == "met":
            assert second["raw_objects"]["fetched_this_run"] == 0
        else:
            assert second["raw_objects"]["this_run_unchanged"] == first["raw_objects"]["rows"]
        assert second["raw_images"]["downloaded_this_run"] == 0
        assert second["raw_images"]["reused"] == first["raw_images"]["ok"]
    met = build_defs("sample").load_asset_value("raw_objects", partition_key="met")
    assert isinstance(met, pl.DataFrame) and met["source_id"].n_unique() == met.height >= 1500
    images = build_defs("sample").load_asset_value("raw_images", partition_key="met")
    assert (images["status"] == "ok").all()
    first_ok = images.filter(pl.col("status") == "ok").row(0, named=True)
    assert (artsim_home / "images" / first_ok["path"]).exists()


def test_live_ingest_with_faults_stores_every_valid_record_exactly_once(artsim_home, replay):
    replay.not_a_valid_object_ids.add(437980)
    replay.faults.add("403", r"/objects/\d+", count=3)
    replay.faults.add("429", r"/objects/\d+", count=1, retry_after=0.2)
    replay.faults.add("500", r"/objects/\d+", count=4)
    replay.faults.add("timeout", r"/objects/53426$", count=1, delay_s=2 * SHORT_TIMEOUT_S)
    replay.faults.add("truncated", r"/objects/436535$", count=1)
    replay.faults.add("corrupt_image", r"/images/", count=2)
    # 3 s, not 1 s: a corrupt image answered to a request that a loaded machine then let time out
    # would be fetched again, whole, and the run would count one decode error short
    meta = run(live_resources(artsim_home, replay, timeout_s=SHORT_TIMEOUT_S), "met")
    table = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_objects", "met")
    assert table["source_id"].n_unique() == table.height == 120
    statuses = dict(table.group_by("status").len().iter_rows())
    assert statuses == {"ok": 119, "gone": 1}
    gone = table.filter(pl.col("status") == "gone").row(0, named=True)
    assert gone["source_id"] == "437980" and "Not a valid object" in gone["error"]
    assert meta["raw_objects"]["http_firewall_hits"] >= 3
    # every ok record is the server's text, byte for byte, under its hash
    row = table.filter(pl.col("source_id") == "436535").row(0, named=True)
    assert row["raw_json"].startswith("{") and '436535' in row["raw_json"]
    images = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_images", "met")
    assert dict(images.group_by("status").len().iter_rows()).get("decode_error") == 2
    assert meta["raw_images"]["failed_this_run"] == 2
    # the next run retries the two broken images only
    again = run(live_resources(artsim_home, replay), "met")
    assert again["raw_images"]["downloaded_this_run"] == 2 and again["raw_images"]["failed_this_run"] == 0


def test_second_run_fetches_only_what_changed_since_the_cursor(artsim_home, replay):
    resources = live_resources(artsim_home, replay)
    run(resources, "met", [raw_objects])
    record = dict(replay.met_record(436535))
    record["title"] = record["title"] + " (retitled)"
    replay.set_met_record(record)  # touch: metadataDate becomes now
    replay.clear_requests()
    meta = run(resources, "met", [raw_objects])["raw_objects"]
    assert meta["full_listing"] is False
    assert meta["this_run_changed"] == 1 and meta["this_run_new"] == 0
    assert replay.count(r"/objects/\d+") == meta["fetched_this_run"] < 10
    table = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_objects", "met")
    assert table.height == 120 and "(retitled)" in table.filter(pl.col("source_id") == "436535")["raw_json"].item()
    # the run wrote the one changed row beside the stored table, not the table again
    assert (meta["rows_written"], meta["compacted"], meta["deltas"]) == (1, False, 1) and meta["rows"] == 120
    base = pl.read_parquet(artsim_home / "storage" / "raw_objects" / "met.parquet")
    assert base.height == 120 and "(retitled)" not in base.filter(pl.col("source_id") == "436535")["raw_json"].item()
    assert not (artsim_home / "checkpoints" / "raw_objects" / "met.jsonl").exists()  # folded into the table


def test_smk_full_listing_detects_changed_and_gone_by_content_hash(artsim_home, replay, shared_smk_records):
    resources = live_resources(artsim_home, replay)
    first = run(resources, "smk", [raw_objects])["raw_objects"]
    assert first["this_run_new"] == len(shared_smk_records)
    replay.remove_smk_record("KMS1")
    item = dict(next(i for i in shared_smk_records if i["object_number"] == "KMSr13"))
    item["modified"] = "2026-11-01T00:00:00Z"
    replay.set_smk_record(item)
    meta = run(resources, "smk", [raw_objects])["raw_objects"]
    assert (meta["this_run_changed"], meta["this_run_gone"]) == (1, 1)
    table = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_objects", "smk")
    kms1 = table.filter(pl.col("source_id") == "KMS1").row(0, named=True)
    assert kms1["status"] == "gone" and kms1["raw_json"]  # the last good text is kept


CRASHING_RUN = textwrap.dedent(
    """
    import sys
    from dagster import materialize
    from artsim_pipeline.defs.ingest.assets import raw_objects
    from artsim_pipeline_tests.defs.test_ingest_assets import live_resources
    from pathlib import Path

    class Server:
        met_base_url, smk_base_url = sys.argv[2], sys.argv[3]

    materialize([raw_objects], partition_key="met", resources=live_resources(Path(sys.argv[1]), Server, requests_per_second=40.0, max_workers=2))
    """
)


def test_a_killed_run_resumes_without_refetching(artsim_home, replay):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_RUN, str(artsim_home), replay.met_base_url, replay.smk_base_url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 180  # the subprocess imports Dagster first: slow on a loaded machine
    while replay.count(r"/objects/\d+") < 50 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    fetched_before = {r.path.rsplit("/", 1)[-1] for r in replay.requests if "/objects/" in r.path and r.status == 200}
    assert 50 <= len(fetched_before) < 120
    assert TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_objects", "met") is None  # nothing was stored yet

    replay.clear_requests()
    meta = run(live_resources(artsim_home, replay), "met", [raw_objects])["raw_objects"]
    refetched = {r.path.rsplit("/", 1)[-1] for r in replay.requests if "/objects/" in r.path}
    # a fetch that was in flight at the kill may not have reached the journal: allow the workers' share
    assert len(refetched & fetched_before) <= 2
    assert meta["reused_from_checkpoint"] >= len(fetched_before) - 2
    table = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_objects", "met")
    assert table.height == 120 and table["source_id"].n_unique() == 120 and (table["status"] == "ok").all()
    assert not (artsim_home / "checkpoints" / "raw_objects" / "met.jsonl").exists()  # emptied once the rows are stored


def test_poison_records_are_error_rows_the_rest_is_stored_and_validated_and_the_cursor_moves(artsim_home, replay):
    """Issue 17: a body the parser cannot handle, invalid UTF-8 and a lone surrogate never fail
    the run; the permanent failure is retried by id on the next run, which crawls nothing else."""
    from artsim_pipeline.defs.validation.assets import artworks

    ids = [str(i) for i in replay.met_ids]
    nested, latin1, surrogate = ids[1], ids[2], ids[3]
    replay.set_met_body(int(nested), b"[" * 5000 + b"]" * 5000)
    body = replay.met_record(int(latin1))
    body["title"] = "Caf\u00e9 ZZ"
    replay.set_met_body(int(latin1), json.dumps(body).encode().replace(b"ZZ", b"\xe9t\xe9"))  # latin-1 bytes
    rec = replay.met_record(int(surrogate))
    rec["title"] = "\udfff" + rec["title"]
    rec.update(isPublicDomain=True, primaryImageSmall=f"{replay.base_url}/images/met/\udfff.jpg")  # in its image URL too
    replay.set_met_body(int(surrogate), json.dumps(rec).encode())  # ASCII: "\udfff" as an escape

    resources = live_resources(artsim_home, replay)
    meta = run(resources, "met", [raw_objects, raw_images, artworks])
    raw = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_objects", "met")
    assert raw.height == 120 and raw["source_id"].n_unique() == 120
    bad = raw.filter(pl.col("status") != "ok")
    assert bad["source_id"].to_list() == [nested]
    row = bad.row(0, named=True)
    assert row["status"] == "error" and "nested too deeply" in row["error"] and row["raw_json"].startswith("[[[")
    assert meta["raw_objects"]["this_run_text_repairs"] == 2  # two invalid bytes (the surrogate stays the escape it came as)
    assert meta["raw_objects"]["retry_next_run"] == 1
    assert replay.count(rf"/objects/{nested}$") == 1  # terminal: not retried within the run
    # the rest is validated: the repaired records are artworks, nothing is lost
    assert meta["artworks"]["rows"] + meta["artworks"]["quarantined"] == 119
    assert meta["artworks"]["text_repairs"] == 2  # the title and the image URL
    works = TableStore(base_dir=str(artsim_home / "storage")).read_table("artworks", "met")
    titles = dict(zip(works["source_id"], works["title"], strict=True))
    assert titles[latin1].startswith("Caf\u00e9 \ufffdt\ufffd") and titles[surrogate].startswith("\ufffd")
    images = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_images", "met")
    assert images.filter(pl.col("source_id") == surrogate)["url"].item().endswith("/images/met/\ufffd.jpg")
    state = json.loads((artsim_home / "state" / "raw_objects" / "met.json").read_text())
    assert state["cursor"] and state["retry_ids"] == [nested]

    # next run: an incremental listing (nothing changed) plus the failed id, fetched by id
    replay.clear_requests()
    meta = run(resources, "met", [raw_objects])["raw_objects"]
    assert meta["full_listing"] is False and meta["fetched_this_run"] == 1
    assert replay.count(r"/objects/\d+") == 1 and replay.count(rf"/objects/{nested}$") == 1
    # the museum fixes the record: the next run picks it up by id
    replay.met_bodies.pop(int(nested))
    meta = run(resources, "met", [raw_objects])["raw_objects"]
    raw = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_objects", "met")
    assert (raw["status"] == "ok").all() and meta["retry_next_run"] == 0


def test_smk_listing_problems_are_rows_with_reasons(artsim_home, replay, shared_smk_records):
    replay.smk_extra_listing += [{"titles": [{"title": "no number"}]},
                                 {**shared_smk_records[0], "modified": "2099-01-01T00:00:00Z"}]
    meta = run(live_resources(artsim_home, replay), "smk", [raw_objects])["raw_objects"]
    table = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_objects", "smk")
    assert table.height == len(shared_smk_records) + 2
    errors = table.filter(pl.col("status") == "error")
    assert errors.height == 2 and errors["error"].str.len_chars().min() > 10 and errors["raw_json"].is_not_null().all()
    assert meta["listing_items"] == len(shared_smk_records) + 2
    assert (meta["listing_without_object_number"], meta["listing_duplicates"]) == (1, 1)


def export_resources(home: Path, **api) -> dict:
    tables = TableStore(base_dir=str(home / "storage"))
    return {"tables": tables, "io_manager": PolarsParquetIOManager(store=tables), "storage": ArtsimStorage(home=str(home)),
            "museum_api": MuseumApiResource(**api)}


def test_the_collection_export_is_ingested_with_its_quirks_counted_and_reruns_change_nothing(artsim_home):
    resources = export_resources(artsim_home)  # the sample's snapshot mode: the bundled Met MediaLab export
    first = run(resources, "met_medialab")
    raw = first["raw_objects"]
    assert raw["rows"] == raw["ok"] == raw["this_run_new"] == 428 and raw["full_listing"] is True
    assert (raw["listing_text_values_decoded_with_fallback"], raw["listing_text_values_repaired"],
            raw["listing_text_values_undecodable"]) == (6, 26, 2)
    assert "Sèvres" in " ".join(raw["text_repair_examples"]["repaired"])
    assert first["raw_images"]["ok"] == 428 and first["raw_images"]["failed_this_run"] == 0

    second = run(resources, "met_medialab")
    assert second["raw_objects"]["this_run_unchanged"] == 428
    assert second["raw_objects"]["this_run_new"] == second["raw_objects"]["this_run_changed"] == 0
    assert second["raw_images"]["downloaded_this_run"] == 0 and second["raw_images"]["reused"] == 428

    store = TableStore(base_dir=str(artsim_home / "storage"))
    table = store.read_table("raw_objects", "met_medialab")
    assert table["raw_json"].str.starts_with('{"id": ').all() and table["content_hash"].n_unique() == 428
    images = store.read_table("raw_images", "met_medialab")
    shared = images.filter(pl.col("url").str.ends_with("/ES4199.jpg"))
    assert sorted(shared["source_id"]) == ["203491", "203517"] and (shared["status"] == "ok").all()
    assert shared["sha256"].n_unique() == 1
    assert images["sha256"].n_unique() == 427  # 427 photographs for 428 records
    spaced = images.filter(pl.col("url").str.contains("%20"))
    assert spaced.height == 2 and (spaced["status"] == "ok").all()
    assert all((artsim_home / "images" / p).is_file() for p in images["path"])


def test_a_rerun_writes_only_what_changed_and_lists_no_stored_image(artsim_home, monkeypatch):
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.resources.objects import LocalObjectStore

    defs = build_defs("sample")
    first = run(defs.resources, "met_medialab")
    assert first["raw_objects"]["rows_written"] == first["raw_objects"]["rows"] == 428
    listed = []
    real_list = LocalObjectStore.list_keys
    monkeypatch.setattr(LocalObjectStore, "list_keys", lambda self, prefix: listed.append(prefix) or real_list(self, prefix))
    second = run(defs.resources, "met_medialab")
    assert second["raw_objects"]["rows_written"] == second["raw_images"]["rows_written"] == 0
    assert second["raw_images"]["reused"] == 428 and second["raw_images"]["rows"] == first["raw_images"]["rows"]
    assert not [p for p in listed if p.startswith("images")]  # the previous table is the manifest of stored images
    # the contract: the whole, de-duplicated table through the IO manager
    loaded = defs.load_asset_value("raw_objects", partition_key="met_medialab")
    assert isinstance(loaded, pl.DataFrame) and loaded.height == 428 and loaded["source_id"].is_unique().all()


def test_a_missing_image_file_in_an_export_is_a_failure_row(artsim_home, tmp_path):
    import shutil

    from artsim_pipeline.sample import bundled_export_dir

    exports = tmp_path / "exports"
    shutil.copytree(bundled_export_dir("met_medialab"), exports / "met_medialab")
    (exports / "met_medialab" / "images" / "CRDImages" / "gr" / "original" / "DP261238.jpg").unlink()
    meta = run(export_resources(artsim_home, mode="live", exports_dir=str(exports)), "met_medialab")
    assert meta["raw_images"]["failures_by_status"] == {"not_found": 1} and meta["raw_images"]["ok"] == 427
    images = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_images", "met_medialab")
    failed = images.filter(pl.col("status") != "ok").row(0, named=True)
    assert failed["source_id"] == "245497" and failed["status"] == "not_found" and "DP261238.jpg" in failed["error"]
    assert failed["sha256"] is None


def test_images_lost_from_the_store_are_downloaded_again_when_verifying(artsim_home):
    from artsim_pipeline.definitions import build_defs

    defs = build_defs("sample")
    run(defs.resources, "met_medialab")
    images = TableStore(base_dir=str(artsim_home / "storage")).read_table("raw_images", "met_medialab")
    lost = images.filter(pl.col("status") == "ok")["path"][0]
    (artsim_home / "images" / lost).unlink()
    trusting = run(defs.resources, "met_medialab")
    assert trusting["raw_images"]["downloaded_this_run"] == 0 and not (artsim_home / "images" / lost).exists()
    config = {"ops": {"raw_images": {"config": {"verify_stored": True}}}}
    result = materialize([raw_objects, raw_images], partition_key="met_medialab", resources=defs.resources, run_config=config)
    assert result.success
    meta = {m.asset_key.to_user_string(): m.metadata for m in (e.materialization for e in result.get_asset_materialization_events())}
    assert meta["raw_images"]["downloaded_this_run"].value == 1 and meta["raw_images"]["reused"].value == 427
    assert (artsim_home / "images" / lost).exists()
