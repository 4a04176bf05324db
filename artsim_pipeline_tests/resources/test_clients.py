"""The live Met and SMK clients, over real HTTP against the local replay server with faults."""

from __future__ import annotations

import json
import time

import pytest

from artsim_pipeline.resources.clients.http import HttpPolicy, PoliteSession, parse_retry_after
from artsim_pipeline.resources.clients.met import MetClient
from artsim_pipeline.resources.clients.smk import SmkClient


def fast_policy(**overrides) -> HttpPolicy:
    values = dict(requests_per_second=500, burst=20, max_workers=8, timeout_s=1.0, max_retries=4,
                  backoff_base_s=0.01, backoff_max_s=0.05, firewall_cooldown_s=0.3)
    values.update(overrides)
    return HttpPolicy(**values)


@pytest.fixture
def met(replay):
    client = MetClient(replay.met_base_url, PoliteSession(fast_policy()))
    yield client
    client.close()


def test_met_listing_and_concurrent_fetch_store_every_record_verbatim(met, replay):
    listing = met.list_ids()
    assert listing.full and len(listing.ids) == 120
    results = list(met.fetch_objects(listing.ids))
    assert sorted(r.source_id for r in results) == sorted(listing.ids)
    assert all(r.status == "ok" for r in results)
    by_id = {r.source_id: r for r in results}
    assert '"objectID": 436535' in by_id["436535"].raw_json or '"objectID":436535' in by_id["436535"].raw_json
    assert replay.count(r"/objects/\d+") == 120  # one request per object, no duplicates


def test_met_listing_filters_by_metadata_date_and_department(met, replay):
    newest = max((replay.met_record(int(i)) or {}).get("metadataDate", "") for i in met.list_ids().ids)
    since = met.list_ids(since=newest[:10])
    assert not since.full and 0 < len(since.ids) < 120
    assert "metadataDate=" in replay.requests[-1].path
    dept = MetClient(replay.met_base_url, PoliteSession(fast_policy()), department_ids=[11])  # European Paintings
    ids = dept.list_ids().ids
    assert ids and all(replay.met_record(int(i))["department"] == "European Paintings" for i in ids)


def test_met_terminal_answers_are_gone_not_retried(met, replay):
    replay.not_a_valid_object_ids.add(436535)
    results = {r.source_id: r for r in met.fetch_objects(["436535", "999999999"])}
    assert results["436535"].status == "gone" and "Not a valid object" in results["436535"].error
    assert results["999999999"].status == "gone" and "ObjectID not found" in results["999999999"].error
    assert replay.count(r"/objects/436535") == 1 and replay.count(r"/objects/999999999") == 1


@pytest.mark.parametrize("kind", ["500", "503", "truncated", "reset", "timeout"])
def test_met_transient_faults_are_retried_until_the_record_arrives(met, replay, kind):
    params = {"delay_s": 2.0} if kind == "timeout" else {}
    replay.faults.add(kind, r"/objects/436535$", count=2, **params)
    [result] = list(met.fetch_objects(["436535"]))
    assert result.status == "ok", result.error
    assert replay.count(r"/objects/436535$") == 3
    assert met.http.stats.retries == 2


def test_met_gives_up_with_an_error_after_max_retries(replay):
    client = MetClient(replay.met_base_url, PoliteSession(fast_policy(max_retries=2)))
    replay.faults.add("500", r"/objects/436535$", count=None)
    [result] = list(client.fetch_objects(["436535"]))
    assert result.status == "error" and "HTTP 500" in result.error and "3 attempts" in result.error


def test_429_retry_after_pauses_every_worker(met, replay):
    replay.faults.add("429", r"/objects/", count=1, retry_after=1)
    started = time.monotonic()
    results = list(met.fetch_objects(met.list_ids().ids[:20]))
    assert all(r.status == "ok" for r in results)
    assert time.monotonic() - started >= 0.9  # Retry-After honoured
    assert met.http.stats.throttled == 1


def test_a_403_burst_trips_the_cooldown_for_all_workers_then_recovers(met, replay):
    replay.faults.add("403", r"/objects/", count=5)
    started = time.monotonic()
    results = list(met.fetch_objects(met.list_ids().ids[:40]))
    assert all(r.status == "ok" for r in results)
    assert met.http.stats.firewall_hits >= 1 and met.http.gate.trips >= 1
    assert time.monotonic() - started >= 0.3  # at least one cooldown was served
    assert len({r.source_id for r in results}) == 40


def test_the_firewall_is_never_triggered_at_the_default_rate(replay):
    # The real firewall blocks ~30 quick requests; the default policy must stay under it.
    replay.faults.add("firewall", ".*", count=None, burst=30, window_s=1.0, block_s=5.0)
    client = MetClient(replay.met_base_url, PoliteSession(HttpPolicy(timeout_s=2.0)))
    results = list(client.fetch_objects(client.list_ids().ids[:40]))
    assert all(r.status == "ok" for r in results)
    assert client.http.stats.firewall_hits == 0
    assert replay.count(".*", status=403) == 0


def test_parse_retry_after_reads_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_smk_pages_through_search_and_fetches_single_objects_escaped(replay, shared_smk_records):
    client = SmkClient(replay.smk_base_url, PoliteSession(fast_policy()), rows=5)
    listing = client.list_ids()
    expected = sorted(i["object_number"] for i in shared_smk_records)
    assert sorted(listing.ids) == expected and listing.full
    assert replay.count(r"/art/search/") == 5  # 22 items at 5 a page
    results = {r.source_id: r for r in client.fetch_objects(listing.ids)}
    assert all(r.status == "ok" for r in results.values())
    # an object not in the listing is fetched by object number, escaped ('/' and non-ASCII)
    fresh = SmkClient(replay.smk_base_url, PoliteSession(fast_policy()))
    odd = [n for n in expected if "/" in n or not n.isascii()]
    assert odd, "the shared SMK data holds object numbers with '/' or non-ASCII"
    fetched = {r.source_id: r for r in fresh.fetch_objects(odd)}
    assert all(r.status == "ok" for r in fetched.values())
    assert all(n in fetched[n].raw_json for n in odd)
    [missing] = list(fresh.fetch_objects(["NOPE/1"]))
    assert missing.status == "gone"


def test_smk_image_urls_prefer_a_web_size_iiif_image(replay):
    client = SmkClient(replay.smk_base_url, PoliteSession(fast_policy()))
    urls = [client.image_url(json.loads(r.raw_json)) for r in client.fetch_objects(client.list_ids().ids)]
    assert any(u and "/full/!1024,/0/default.jpg" in u for u in urls)
    image = client.fetch_image(next(u for u in urls if u))
    assert image.content and image.error is None
