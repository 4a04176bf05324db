"""The live Met and SMK clients, over real HTTP against the local replay server with faults."""

from __future__ import annotations

import json
import time

import pytest

from artsim_pipeline.resources.clients.http import HttpPolicy, PoliteSession, parse_retry_after
from artsim_pipeline.resources.clients.met import MetClient
from artsim_pipeline.resources.clients.smk import SmkClient


# A "timeout" fault holds its answer for TIMEOUT_FAULT_DELAY_S; a client with SHORT_TIMEOUT_S gives
# up on it first. Only the tests of timeout faults use the short timeout: everywhere else a page
# answered slowly by a loaded machine must not count as a fault (an extra request, an extra retry).
SHORT_TIMEOUT_S = 3.0
TIMEOUT_FAULT_DELAY_S = 2 * SHORT_TIMEOUT_S


def fast_policy(**overrides) -> HttpPolicy:
    values = dict(requests_per_second=500, burst=20, max_workers=8, timeout_s=10.0, max_retries=4,
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
    params = {"delay_s": TIMEOUT_FAULT_DELAY_S} if kind == "timeout" else {}
    replay.faults.add(kind, r"/objects/436535$", count=2, **params)
    if kind == "timeout":  # short enough to give up on the held answers, long enough for the third
        met = MetClient(replay.met_base_url, PoliteSession(fast_policy(timeout_s=SHORT_TIMEOUT_S)))
    try:
        [result] = list(met.fetch_objects(["436535"]))
        assert result.status == "ok", result.error
        assert replay.count(r"/objects/436535$") == 3
        assert met.http.stats.retries == 2
    finally:
        met.close()  # the fixture closes its own client again: closing twice is harmless


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
    assert met.http.stats.firewall_hits >= 1 and met.http.limiter.blocks >= 1
    assert met.http.limiter.probes >= 1  # the block was ended by a probe, not by everybody at once
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


# -- poison records: bodies a parser cannot handle are terminal per-record errors -----------------


def deeply_nested(levels: int = 5000) -> bytes:
    return b"[" * levels + b"]" * levels


def test_a_deeply_nested_body_is_a_terminal_error_row_and_the_rest_arrive(met, replay):
    ids = met.list_ids().ids[:10]
    replay.set_met_body(int(ids[3]), b'{"objectID": ' + ids[3].encode() + b', "x": ' + deeply_nested() + b"}")
    replay.set_met_body(int(ids[5]), deeply_nested())
    results = {r.source_id: r for r in met.fetch_objects(ids)}
    assert sorted(results) == sorted(ids)
    for bad in (ids[3], ids[5]):
        assert results[bad].status == "error" and "nested too deeply" in results[bad].error
        assert replay.count(rf"/objects/{bad}$") == 1  # terminal: never retried
        assert results[bad].raw_json is not None and results[bad].raw_json.startswith(("{", "["))  # kept as answered
    assert all(results[i].status == "ok" for i in ids if i not in (ids[3], ids[5]))
    assert met.http.stats.unparseable == 2 and met.http.stats.retries == 0


def test_a_complete_body_that_is_not_json_is_terminal_not_retried(met, replay):
    [oid] = met.list_ids().ids[:1]
    replay.set_met_body(int(oid), b"<html>maintenance</html>")
    [result] = list(met.fetch_objects([oid]))
    assert result.status == "error" and result.error.startswith("unparseable body")
    assert replay.count(rf"/objects/{oid}$") == 1


def test_invalid_utf8_is_replaced_and_counted_not_retried(met, replay):
    [oid] = met.list_ids().ids[:1]
    body = json.dumps({"objectID": int(oid), "title": "Caf\u00e9 XX", "isPublicDomain": False}).encode()
    replay.set_met_body(int(oid), body.replace(b"XX", b"\xff\xfe\xc3"))  # 3 invalid bytes
    [result] = list(met.fetch_objects([oid]))
    assert result.status == "ok", result.error
    assert json.loads(result.raw_json)["title"] == "Caf\u00e9 \ufffd\ufffd\ufffd"
    assert result.text_repairs == 3 and met.http.stats.text_repairs == 3
    assert replay.count(rf"/objects/{oid}$") == 1
    result.raw_json.encode("utf-8")  # storable


def test_a_lone_surrogate_escape_is_stored_as_received_and_always_encodable(met, replay, shared_smk_records):
    [oid] = met.list_ids().ids[:1]
    replay.set_met_body(int(oid), b'{"objectID": ' + oid.encode() + b', "title": "\\udfff broken"}')
    [result] = list(met.fetch_objects([oid]))
    assert result.status == "ok" and "\\udfff" in result.raw_json
    result.raw_json.encode("utf-8")
    # SMK items are re-serialised: a lone surrogate becomes an escape again (the same JSON value)
    item = {**shared_smk_records[0], "object_number": "KMS-surrogate", "titles": [{"title": "\udfff"}]}
    replay.set_smk_record(item)
    smk = SmkClient(replay.smk_base_url, PoliteSession(fast_policy()))
    by_id = {r.source_id: r for r in smk.fetch_objects(smk.list_ids().ids)}
    stored = by_id["KMS-surrogate"]
    assert stored.status == "ok" and stored.text_repairs == 1 and "\\udfff" in stored.raw_json
    stored.raw_json.encode("utf-8")
    assert json.loads(stored.raw_json)["titles"][0]["title"] == "\udfff"


def test_a_url_no_request_can_be_sent_to_is_terminal(met, replay):
    for url in ("ht!tp://nowhere", "http://", f"{replay.base_url}/images/\udfff.jpg".replace("http", "http:")):
        image = met.fetch_image(url)
        assert image.content is None and image.gone and image.error, url
    assert met.http.stats.retries == 0


def test_anything_a_client_raises_for_one_record_becomes_its_error_row(met, monkeypatch):
    original = met.fetch_object

    def flaky(object_id):
        if object_id == "2":
            raise RecursionError("maximum recursion depth exceeded")
        return original(object_id)

    monkeypatch.setattr(met, "fetch_object", flaky)
    ids = met.list_ids().ids[:3] + ["2"]
    results = {r.source_id: r for r in met.fetch_objects(ids)}
    assert results["2"].status == "error" and "RecursionError" in results["2"].error
    assert all(results[i].status == "ok" for i in ids[:3])


# -- SMK: every listed item becomes a row -----------------------------------------------------------


def test_smk_listing_makes_a_row_of_every_item(replay, shared_smk_records):
    from artsim_pipeline_tests.replay.server import RawJson

    newer = {**shared_smk_records[0], "modified": "2099-01-01T00:00:00Z", "titles": [{"title": "newer copy"}]}
    twice = {"object_number": "KMS-twice", "titles": [{"title": "listed twice"}]}
    replay.smk_extra_listing += [
        {**shared_smk_records[1], "object_number": None},  # no id
        {"titles": [{"title": "no object_number at all"}]},
        "not an object",
        newer,  # a second item with the object number of the first, modified later
        twice,
        twice,  # an exact repeat
        RawJson(b'{"object_number": "KMS-poison", "x": ' + deeply_nested() + b"}"),
    ]
    client = SmkClient(replay.smk_base_url, PoliteSession(fast_policy()), rows=7)
    listing = client.list_ids()
    n_items = len(shared_smk_records) + 7
    assert listing.notes == {"items": n_items, "without_object_number": 3, "duplicates": 2, "unreadable": 1}
    results = {r.source_id: r for r in client.fetch_objects(listing.ids)}
    assert len(results) == n_items  # one row per listed item (KMS-twice: one ok, one duplicate)
    errors = {k: r for k, r in results.items() if r.status == "error"}
    assert len(errors) == 6 and all(r.error for r in errors.values())
    assert sum("no usable object_number" in r.error for r in errors.values()) == 3
    dups = [r for r in errors.values() if r.error.startswith("duplicate_id")]
    assert len(dups) == 2 and {"(same content)" in r.error for r in dups} == {True, False}
    # the item modified last keeps the object number; the other is kept beside it
    first = shared_smk_records[0]["object_number"]
    assert json.loads(results[first].raw_json)["titles"] == [{"title": "newer copy"}]
    assert any(json.loads(r.raw_json).get("modified") == shared_smk_records[0].get("modified") for r in dups)
    [poison] = [r for r in errors.values() if "cannot be read" in r.error]
    assert "nested too deeply" in poison.error
    # a listing problem that disappears later is gone, without asking the API for it
    fresh = SmkClient(replay.smk_base_url, PoliteSession(fast_policy()))
    [again] = list(fresh.fetch_objects([poison.source_id]))
    assert again.status == "gone"


# -- the adaptive limiter against a rate firewall (fast: a 20/s firewall, half-second blocks) ---------


def test_the_limiter_learns_what_a_rate_firewall_sustains_and_remembers_it(replay):
    # A quick block makes the limiter take what got through (burst + 20/s x T seconds) as 2.5 s of
    # the firewall's rate: that is under 20/s only if T < 2.5 - burst/20. With burst 20 a client
    # sending more than ~34 requests/s (a loaded 2-core CI machine) trips the firewall early enough
    # (T < 1.5 s, at most ~50 answers, so 60 requests always trip it); with burst 40 it took 100/s.
    # Burst 20 also keeps the learned rate over 5/s: at least 13 of its 20 answers are counted.
    firewall = replay.faults.add("rate_firewall", r"/objects/\d+", rate=20.0, burst=20, block_s=0.5)
    policy = fast_policy(requests_per_second=400, burst=5, firewall_cooldown_s=2.0)
    client = MetClient(replay.met_base_url, PoliteSession(policy))
    ids = client.list_ids().ids
    results = list(client.fetch_objects(ids[:60]))
    assert all(r.status == "ok" for r in results) and len(results) == 60
    limiter = client.http.limiter
    assert 1 <= firewall.blocks <= 2 and limiter.blocks == firewall.blocks
    assert 5.0 <= limiter.rate < 20.0  # lowered under the firewall's rate, not to a crawl
    assert limiter.probes >= 1 and replay.count(r"/objects/\d+", status=403) <= 8 * 3 + limiter.probes
    state = limiter.state()
    assert state["rate"] == pytest.approx(limiter.rate, rel=1e-3) and state["ceiling"] == 400
    client.close()
    # the next run starts from the learned rate and is not blocked
    again = MetClient(replay.met_base_url, PoliteSession(policy))
    again.http.limiter.restore(state)
    assert again.http.limiter.rate == pytest.approx(state["rate"], rel=1e-3)
    blocks = firewall.blocks
    assert all(r.status == "ok" for r in again.fetch_objects(ids[60:90]))
    assert firewall.blocks == blocks
