"""`raw_objects`, `raw_images` and `artworks` of the museums added through the registry (cma, aic),
materialised through Dagster: from the bundled sample, and live against the replay server with
faults and incremental re-runs (full listings, changes found by content hash)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from dagster import materialize

from artsim_pipeline.defs.ingest.assets import raw_images, raw_objects
from artsim_pipeline.defs.validation.assets import artworks
from artsim_pipeline.resources.tables import TableStore
from artsim_pipeline_tests.defs.test_ingest_assets import live_resources, run

ALL = (raw_objects, raw_images, artworks)


def museum_resources(home, server, **overrides):
    return live_resources(home, server, base_urls={k: server.base_urls[k] for k in ("cma", "aic")}, **overrides)


def tables(home) -> TableStore:
    return TableStore(base_dir=str(home / "storage"))


@pytest.mark.parametrize(("source", "records", "images"), [("cma", 76, 76), ("aic", 21, 0)])
def test_sample_environment_ingests_and_validates_the_new_museums(artsim_home, source, records, images):
    from artsim_pipeline.definitions import build_defs

    resources = build_defs("sample").resources
    first = run(resources, source, ALL)
    assert first["raw_objects"]["this_run_new"] == first["raw_objects"]["rows"] == records
    assert first["raw_images"]["ok"] == images  # AIC: the sample's records do not say they are public domain
    store = tables(artsim_home)
    artworks_table, quarantine = store.read_table("artworks", source), store.read_table("artworks_quarantine", source)
    assert artworks_table.height + quarantine.height == records and quarantine.height == 0
    assert artworks_table["image_sha256"].is_not_null().sum() == images
    second = run(resources, source, ALL)
    assert (second["raw_objects"]["this_run_unchanged"], second["raw_objects"]["this_run_changed"]) == (records, 0)
    assert second["raw_images"]["downloaded_this_run"] == 0 and second["raw_images"]["reused"] == images


def test_cleveland_live_ingest_with_faults_then_changes_found_by_content_hash(artsim_home, replay):
    replay.faults.add("500", r"/cma/api/artworks/\?", count=2)
    replay.faults.add("reset", r"/cma/api/artworks/\?", count=1)
    replay.faults.add("corrupt_image", r"/images/cma/", count=1)
    resources = museum_resources(artsim_home, replay)
    first = run(resources, "cma", ALL)
    assert first["raw_objects"]["rows"] == first["raw_objects"]["ok"] == 76 and first["raw_objects"]["full_listing"] is True
    assert first["raw_objects"]["http_retries"] >= 3
    assert first["raw_images"]["ok"] == 75 and first["raw_images"]["failed_this_run"] == 1
    store = tables(artsim_home)
    assert store.read_table("artworks", "cma").height == 76
    stored = store.read_table("raw_objects", "cma").filter(pl.col("source_id") == "93014")["raw_json"].item()
    assert json.loads(stored)["title"].startswith("View of Schroon Mountain")

    changed = replay.record("cma", "137259")
    replay.set_record("cma", {**changed, "title": "Mme L... (Laure Borreau), retitled"})
    assert replay.remove_record("cma", "93014")
    replay.set_record("cma", {**replay.record("cma", "94979"), "id": 999001, "accession_number": "2031.1"})
    replay.clear_requests()
    second = run(resources, "cma", ALL)["raw_objects"]
    assert (second["this_run_new"], second["this_run_changed"], second["this_run_gone"]) == (1, 1, 1)
    assert second["this_run_unchanged"] == 74
    assert replay.count(r"/cma/api/artworks/\d") == 0  # the listing brought every record
    images = run(resources, "cma", [raw_objects, raw_images])["raw_images"]
    assert images["downloaded_this_run"] == 0 and images["reused"] == 76  # the broken one was fetched again last run
    table = store.read_table("artworks", "cma")
    assert "cma:93014" not in table["artwork_id"].to_list() and "cma:999001" in table["artwork_id"].to_list()
    assert "retitled" in table.filter(pl.col("artwork_id") == "cma:137259")["title"].item()


def test_aic_live_ingest_downloads_only_public_domain_images(artsim_home, replay, shared_paged_records):
    public = {**shared_paged_records["aic"][5], "is_public_domain": True}
    replay.set_record("aic", public)
    replay.faults.add("429", r"/aic/api/v1/artworks\?", count=1, retry_after=0)
    resources = museum_resources(artsim_home, replay)
    first = run(resources, "aic", ALL)
    assert first["raw_objects"]["ok"] == 21 and first["raw_objects"]["http_throttled"] == 1
    assert first["raw_images"]["rows"] == first["raw_images"]["ok"] == 1
    store = tables(artsim_home)
    works = store.read_table("artworks", "aic")
    with_image = works.filter(pl.col("image_sha256").is_not_null())
    assert with_image["artwork_id"].to_list() == [f"aic:{public['id']}"]
    raw = store.read_table("raw_objects", "aic")
    assert raw["raw_json"].str.contains("license_text").all()  # each stored record keeps the licence block
    again = run(resources, "aic", ALL)
    assert again["raw_objects"]["this_run_unchanged"] == 21 and again["raw_images"]["downloaded_this_run"] == 0
