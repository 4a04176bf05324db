"""The replay server's routes for the paged API sources of the registry (Cleveland, AIC)."""

from __future__ import annotations

import pytest
import requests

from artsim_pipeline.core.sources import API_SOURCES
from artsim_pipeline_tests.replay.server import ReplayServer

T = 5


def test_every_api_source_of_the_registry_has_a_root(replay):
    assert set(replay.base_urls) == set(API_SOURCES)


def test_a_registry_api_source_without_routes_is_refused(monkeypatch):
    import artsim_pipeline.core.sources as sources

    monkeypatch.setattr(sources, "API_SOURCES", (*sources.API_SOURCES, "louvre"))
    with pytest.raises(ValueError, match="no routes for API source.*louvre"):
        ReplayServer()


def test_cleveland_listing_and_single_object(replay):
    root = replay.base_urls["cma"]
    body = requests.get(f"{root}/artworks/", params={"skip": 70, "limit": 10, "cc0": 1, "has_image": 1}, timeout=T).json()
    assert body["info"]["total"] == 76 and len(body["data"]) == 6
    assert body["info"]["parameters"] == {"skip": "70", "limit": "10", "cc0": "1", "has_image": "1"}
    one = requests.get(f"{root}/artworks/93014", timeout=T).json()["data"]
    assert one["images"]["web"]["url"].startswith(f"{replay.base_url}/images/cma/")
    assert replay.record("cma", "93014")["images"]["web"]["url"].startswith("https://openaccess-cdn.clevelandart.org/")
    assert requests.get(f"{root}/artworks/1", timeout=T).status_code == 404
    assert replay.remove_record("cma", "93014") and requests.get(f"{root}/artworks/93014", timeout=T).status_code == 404


def test_aic_listing_pages_fields_and_limits(replay):
    root = replay.base_urls["aic"]
    body = requests.get(f"{root}/artworks", params={"page": 3, "limit": 10, "fields": "id,title,nope"}, timeout=T).json()
    assert body["pagination"] == {"total": 21, "limit": 10, "offset": 20, "total_pages": 3, "current_page": 3}
    assert [set(item) for item in body["data"]] == [{"id", "title"}]
    assert "license_text" in body["info"] and body["config"]["iiif_url"] == f"{replay.base_url}/iiif"
    too_many = requests.get(f"{root}/artworks", params={"limit": 101}, timeout=T)
    assert too_many.status_code == 403 and "too many" in too_many.json()["detail"]
    full = requests.get(f"{root}/artworks/209980", timeout=T).json()
    assert full["data"]["is_public_domain"] is False and set(full) == {"data", "info", "config"}
    missing = requests.get(f"{root}/artworks/1", timeout=T)
    assert missing.status_code == 404 and missing.json()["error"] == "Not found"


def test_faults_apply_to_the_paged_routes_too(replay):
    replay.faults.add("503", r"/aic/api/v1/artworks", count=1)
    replay.faults.add("corrupt_image", r"/images/cma/", count=1)
    assert requests.get(f"{replay.base_urls['aic']}/artworks", timeout=T).status_code == 503
    assert requests.get(f"{replay.base_urls['aic']}/artworks", timeout=T).status_code == 200
    url = requests.get(f"{replay.base_urls['cma']}/artworks/93014", timeout=T).json()["data"]["images"]["web"]["url"]
    assert requests.get(url, timeout=T).content.startswith(b"\x00\x13NOTANIMAGE")
    assert requests.get(url, timeout=T).headers["content-type"] == "image/png"
