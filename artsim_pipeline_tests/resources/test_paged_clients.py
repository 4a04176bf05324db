"""The Cleveland and Art Institute of Chicago clients over real HTTP against the replay server:
paging, the requests they make, faults, poisoned listing items, and the AIC's rate limit."""

from __future__ import annotations

import json
import time

import pytest

from artsim_pipeline.resources.clients.aic import FIELDS, MAX_PAGE_SIZE, AicClient
from artsim_pipeline.resources.clients.cma import CmaClient
from artsim_pipeline.resources.clients.http import PoliteSession
from artsim_pipeline.resources.clients.paged import record_json
from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline_tests.replay.server import RawJson
from artsim_pipeline_tests.resources.test_clients import SHORT_TIMEOUT_S, TIMEOUT_FAULT_DELAY_S, fast_policy


@pytest.fixture
def cma(replay):
    client = CmaClient(replay.base_urls["cma"], PoliteSession(fast_policy()), page_size=10)
    yield client
    client.close()


@pytest.fixture
def aic(replay):
    client = AicClient(replay.base_urls["aic"], PoliteSession(fast_policy()), page_size=8)
    yield client
    client.close()


def test_cleveland_pages_with_skip_and_limit_asking_for_cc0_works_with_an_image(cma, replay, shared_paged_records):
    listing = cma.list_ids()
    assert listing.full and sorted(listing.ids) == sorted(str(r["id"]) for r in shared_paged_records["cma"])
    assert listing.notes == {"items": 76, "pages": 8, "without_id": 0, "duplicates": 0, "unreadable": 0}
    pages = [r.path for r in replay.requests if "/cma/api/artworks/?" in r.path]
    assert len(pages) == 8 and all("cc0=1" in p and "has_image=1" in p and "limit=10" in p for p in pages)
    assert sorted(int(p.split("skip=")[1].split("&")[0]) for p in pages) == list(range(0, 80, 10))  # read in parallel
    results = {r.source_id: r for r in cma.fetch_objects(listing.ids)}
    assert len(replay.requests) == 8  # the listing fetched every record: no request per object
    assert all(r.status == "ok" for r in results.values())
    served = replay.apis["cma"].served(replay.record("cma", "93014"))
    assert results["93014"].raw_json == record_json(served) and results["93014"].modified == "2019-11-18 09:03:30.462000"
    url = cma.image_url(json.loads(results["93014"].raw_json))
    assert url == f"{replay.base_url}/images/cma/1335.1917/1335.1917_web.jpg" and cma.fetch_image(url).content


def test_cleveland_lists_only_cc0_works_with_an_image(cma, replay, shared_paged_records):
    record = shared_paged_records["cma"][0]
    replay.set_record("cma", {**record, "id": 1, "share_license_status": "Copyrighted"})
    replay.set_record("cma", {**record, "id": 2, "images": {}})
    assert {"1", "2"}.isdisjoint(cma.list_ids().ids)
    everything = CmaClient(replay.base_urls["cma"], PoliteSession(fast_policy()), cc0_with_image_only=False)
    assert {"1", "2"} <= set(everything.list_ids().ids)
    # the image rule checks CC0 again, whatever the listing asked for
    assert everything.image_url({**record, "share_license_status": "Copyrighted"}) is None


def test_records_outside_the_listing_are_fetched_by_id(cma, aic, replay):
    cma_results = {r.source_id: r for r in cma.fetch_objects(["93014", "424242"])}
    assert cma_results["93014"].status == "ok" and cma_results["424242"].status == "gone"
    assert replay.count(r"/cma/api/artworks/93014$") == 1
    aic_results = {r.source_id: r for r in aic.fetch_objects(["209980", "1"])}
    assert aic_results["209980"].status == "ok" and aic_results["1"].status == "gone"
    single = next(r.path for r in replay.requests if "/aic/api/v1/artworks/209980" in r.path)
    assert "fields=" in single and "is_public_domain" in single


def test_aic_pages_at_most_100_a_page_with_an_explicit_field_list(aic, replay, shared_paged_records):
    assert AicClient(replay.base_urls["aic"], PoliteSession(fast_policy()), page_size=500).page_size == MAX_PAGE_SIZE == 100
    listing = aic.list_ids()
    assert listing.full and len(listing.ids) == 21 and listing.notes["pages"] == 3
    pages = [r.path for r in replay.requests if "/aic/api/v1/artworks?" in r.path]
    assert sorted(p.split("page=")[1].split("&")[0] for p in pages) == ["1", "2", "3"]
    assert all("limit=8" in p and "fields=" + "%2C".join(FIELDS) in p for p in pages)
    [stored] = [r for r in aic.fetch_objects(["209980"])]
    body = json.loads(stored.raw_json)
    assert set(body) == {"data", "info", "config"} and set(body["data"]) <= set(FIELDS)
    assert "CC-By" in body["info"]["license_text"] and body["data"]["description"]  # the licence travels with it
    assert body["config"]["iiif_url"] == f"{replay.base_url}/iiif"


def test_aic_public_domain_images_come_from_the_iiif_root_of_the_answer(aic, replay, shared_paged_records):
    record = {**shared_paged_records["aic"][2], "is_public_domain": True}
    replay.set_record("aic", record)
    results = {r.source_id: r for r in aic.fetch_objects(aic.list_ids().ids)}
    urls = {k: aic.image_url(json.loads(r.raw_json)) for k, r in results.items()}
    assert {k for k, u in urls.items() if u} == {str(record["id"])}  # the others say nothing: no image
    url = urls[str(record["id"])]
    assert url == f"{replay.base_url}/iiif/{record['image_id']}/full/843,/0/default.jpg"
    assert aic.fetch_image(url).content


@pytest.mark.parametrize("kind", ["500", "503", "truncated", "reset", "timeout", "429", "403"])
@pytest.mark.parametrize("source", ["cma", "aic"])
def test_listing_pages_survive_transient_faults(replay, source, kind):
    params = {"delay_s": TIMEOUT_FAULT_DELAY_S} if kind == "timeout" else {"retry_after": 0} if kind == "429" else {}
    replay.faults.add(kind, rf"/{source}/api/.*artworks/?\?", count=2, **params)
    # a page answered slowly on a loaded machine must not count as a fault: only the timeout case
    # needs the short timeout (fast_policy's own is 10 s)
    policy = fast_policy(timeout_s=SHORT_TIMEOUT_S) if kind == "timeout" else fast_policy()
    client = (CmaClient if source == "cma" else AicClient)(replay.base_urls[source], PoliteSession(policy), page_size=25)
    listing = client.list_ids()
    assert len(listing.ids) == (76 if source == "cma" else 21)
    results = list(client.fetch_objects(listing.ids))
    assert all(r.status == "ok" for r in results)
    assert replay.count(rf"/{source}/api/.*artworks/?\?") == listing.notes["pages"] + 2


def test_a_listing_that_keeps_failing_fails_the_run_rather_than_looking_empty(replay):
    replay.faults.add("500", r"/cma/api/artworks/\?", count=None)
    client = CmaClient(replay.base_urls["cma"], PoliteSession(fast_policy(max_retries=1)), page_size=50)
    with pytest.raises(RuntimeError, match="listing failed at offset 0"):
        client.list_ids()


@pytest.mark.parametrize("source", ["cma", "aic"])
def test_poisoned_listing_items_become_error_rows_and_the_rest_arrives(replay, source, shared_paged_records):
    record = shared_paged_records[source][3]
    later = {**record, "title": "Listed again, changed later", "updated_at": "2031-01-01 00:00:00.000000"}
    replay.apis[source].extra_listing += [{"title": "an item without an id"}, RawJson(b'{"id": 77, "title": "\\x"}'), later]
    client = (CmaClient if source == "cma" else AicClient)(replay.base_urls[source], PoliteSession(fast_policy()), page_size=4)
    listing = client.list_ids()
    n = len(shared_paged_records[source])
    assert listing.notes["items"] == n + 3 and listing.notes["unreadable"] == 1
    assert listing.notes["without_id"] == 1 and listing.notes["duplicates"] == 1
    results = {r.source_id: r for r in client.fetch_objects(listing.ids)}
    assert len(results) == n + 2 and sum(r.status == "ok" for r in results.values()) == n
    [unreadable] = [r for k, r in results.items() if k.startswith("unreadable-item:")]
    assert "cannot be read" in unreadable.error and unreadable.raw_json is not None and '"\\x"' in unreadable.raw_json
    [no_id] = [r for k, r in results.items() if k.startswith("no-id:")]
    assert "no usable id" in no_id.error and "an item without an id" in no_id.raw_json
    assert "Listed again, changed later" in results[str(record["id"])].raw_json  # modified last wins


def test_the_aic_default_rate_stays_under_60_requests_a_minute(replay):
    resource = MuseumApiResource(mode="live", base_urls={"aic": replay.base_urls["aic"]}, timeout_s=2.0)
    client = resource.client("aic")
    policy = client.http.policy
    assert (policy.requests_per_second, policy.burst) == (0.95, 1)
    assert policy.burst + policy.requests_per_second * 60 <= 60  # the most a token bucket lets into any minute
    assert resource.client("cma").http.policy.requests_per_second == 10.0  # the registry default of the others
    client.page_size = 1
    client.max_objects = 3
    started = time.monotonic()
    assert len(client.list_ids().ids) == 3
    times = sorted(r.timestamp for r in replay.requests)
    assert time.monotonic() - started >= 2 / 0.95 - 0.1
    # never two at once: the server logs a request when its handler thread gets to it, which a
    # loaded machine may delay by more than 0.1 s for one request and not the next
    assert all(b - a >= 1 / 0.95 - 0.3 for a, b in zip(times, times[1:]))


def test_pages_after_the_first_are_read_by_several_workers(cma, replay):
    # one page at a time takes at least 8 x 0.5 s however fast the machine; in parallel ~2 x 0.5 s,
    # so a loaded machine has 2.5 s for everything else
    replay.latency_s = 0.5
    started = time.monotonic()
    assert len(cma.list_ids().ids) == 76
    assert time.monotonic() - started < 7 * 0.5
