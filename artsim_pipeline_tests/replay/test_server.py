"""Tests of the Met/SMK replay server itself: routes, URL rewriting, faults, log, shutdown."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import requests
from PIL import Image

from artsim_pipeline_tests.replay.server import (
    ReplayServer,
    load_shared_met_records,
    load_shared_smk_records,
    shared_data_dir,
)

T = 5  # client timeout for ordinary calls


@pytest.fixture(scope="module")
def met_records() -> list[dict]:
    return load_shared_met_records()


@pytest.fixture(scope="module")
def smk_records() -> list[dict]:
    return load_shared_smk_records()


@pytest.fixture(scope="module")
def server(met_records, smk_records):
    with ReplayServer(met_records, smk_records) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean_faults(request):
    """Each test starts with no faults, no 'not a valid object' ids and an empty log."""
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        srv.faults.clear()
        srv.not_a_valid_object_ids.clear()
        srv.clear_requests()
    yield


def _met(srv, path, **params):
    return requests.get(srv.met_base_url + path, params=params or None, timeout=T)


def _smk(srv, path, **params):
    return requests.get(srv.smk_base_url + path, params=params or None, timeout=T)


def _record(met_id: int, date: str, **extra) -> dict:
    rec = {"objectID": met_id, "title": f"Object {met_id}", "department": "Asian Art",
           "metadataDate": date, "primaryImage": "", "primaryImageSmall": "", "additionalImages": []}
    rec.update(extra)
    return rec


# ---- shared data loaders -------------------------------------------------------------------


def test_loaders_dedupe_and_exact_records_win(met_records, smk_records):
    ids = [r["objectID"] for r in met_records]
    assert len(ids) == len(set(ids)) > 4000
    exact = [json.loads(x) for x in (shared_data_dir() / "met" / "objects_exact.jsonl").read_text().splitlines()]
    by_id = {r["objectID"]: r for r in met_records}
    for rec in exact:
        assert by_id[rec["objectID"]] == rec
    assert [r["objectID"] for r in load_shared_met_records(limit=3)] == ids[:3]

    numbers = [i["object_number"] for i in smk_records]
    assert numbers == sorted(set(numbers))
    assert {"KMS1", "KMSst28Ø", "KKSgb6775/3"} <= set(numbers)
    kms1 = next(i for i in smk_records if i["object_number"] == "KMS1")
    assert kms1["modified"].startswith("2026")  # the 2026 record beats the 2019 one


def test_shared_dir_env_override(tmp_path, monkeypatch):
    (tmp_path / "met").mkdir()
    (tmp_path / "met" / "objects.jsonl").write_text(json.dumps(_record(1, "2024-01-01T00:00:00Z")) + "\n")
    (tmp_path / "met" / "objects_exact.jsonl").write_text("")
    (tmp_path / "smk" / "responses").mkdir(parents=True)
    (tmp_path / "smk" / "responses" / "a.json").write_text(json.dumps(
        {"items": [{"object_number": "X/1", "modified": "2020-01-01T00:00:00Z"},
                   {"object_number": "X/1", "modified": "2021-01-01T00:00:00Z"}]}))
    monkeypatch.setenv("ARTSIM_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    assert [r["objectID"] for r in load_shared_met_records()] == [1]
    assert load_shared_smk_records() == [{"object_number": "X/1", "modified": "2021-01-01T00:00:00Z"}]


# ---- Met routes ----------------------------------------------------------------------------


def test_base_urls(server):
    assert server.base_url.startswith("http://127.0.0.1:") and server.port > 0
    assert server.met_base_url == server.base_url + "/public/collection/v1"
    assert server.smk_base_url == server.base_url + "/api/v1"


def test_met_object_verbatim_with_rewritten_images(server, met_records):
    original = next(r for r in met_records if r["objectID"] == 436535)
    r = _met(server, "/objects/436535")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    served = r.json()
    img = server.base_url + "/images/met/"
    assert served["primaryImage"] == original["primaryImage"].replace("https://images.metmuseum.org/", img)
    assert served["primaryImageSmall"].startswith(img)
    assert served["additionalImages"] == [
        u.replace("https://images.metmuseum.org/", img) for u in original["additionalImages"]
    ]
    image_keys = {"primaryImage", "primaryImageSmall", "additionalImages"}
    assert {k: v for k, v in served.items() if k not in image_keys} == {
        k: v for k, v in original.items() if k not in image_keys
    }
    no_image = _met(server, "/objects/915129").json()  # in copyright: no image
    assert no_image["primaryImage"] == "" and no_image["additionalImages"] == []


def test_met_object_errors(server):
    r = _met(server, "/objects/999999999")
    assert r.status_code == 404 and r.json() == {"message": "ObjectID not found"}
    server.not_a_valid_object_ids.add(436535)
    r = _met(server, "/objects/436535")
    assert r.status_code == 404 and r.json() == {"message": "Not a valid object"}


def test_met_departments(server):
    body = json.loads((shared_data_dir() / "met" / "responses" / "departments.json").read_text())
    assert _met(server, "/departments").json() == body


def test_met_objects_list_and_metadata_date(server, met_records):
    body = _met(server, "/objects").json()
    assert body["total"] == len(met_records) == len(body["objectIDs"])
    assert body["objectIDs"] == sorted(r["objectID"] for r in met_records)

    since = "2024-01-01"
    expected = sorted(r["objectID"] for r in met_records if r["metadataDate"][:10] >= since)
    body = _met(server, "/objects", metadataDate=since).json()
    assert body["objectIDs"] == expected and 0 < body["total"] < len(met_records)
    assert _met(server, "/objects", metadataDate="2099-01-01").json() == {"total": 0, "objectIDs": None}
    assert _met(server, "/objects", metadataDate="not-a-date").status_code == 400


def test_metadata_date_fractional_digits():
    recs = [
        _record(1, "2024-01-01T23:59:59.999Z"),
        _record(2, "2024-01-02T00:00:00Z"),
        _record(3, "2024-01-02T10:11:12.3Z"),
        _record(4, "2024-01-02T10:11:12.34Z"),
        _record(5, "2024-01-03T01:02:03.456Z"),
    ]
    with ReplayServer(recs, []) as srv:
        assert _met(srv, "/objects", metadataDate="2024-01-02").json()["objectIDs"] == [2, 3, 4, 5]
        assert _met(srv, "/objects", metadataDate="2024-01-03").json()["objectIDs"] == [5]


def test_met_department_ids(server, met_records):
    def ids_for(name):
        return sorted(r["objectID"] for r in met_records if r["department"] == name)

    assert _met(server, "/objects", departmentIds="21").json()["objectIDs"] == ids_for("Modern and Contemporary Art")
    assert _met(server, "/objects", departmentIds="15").json()["objectIDs"] == ids_for("Robert Lehman Collection")
    both = _met(server, "/objects", departmentIds="6|10").json()
    assert both["objectIDs"] == sorted(ids_for("Asian Art") + ids_for("Egyptian Art"))
    # "The American Wing" is not in the /departments list: its objects have no id at all
    every_dept = "|".join(str(i) for i in range(1, 30))
    listed = set(_met(server, "/objects", departmentIds=every_dept).json()["objectIDs"])
    assert not listed & set(ids_for("The American Wing"))
    assert _met(server, "/objects", departmentIds="2").json() == {"total": 0, "objectIDs": None}


def test_met_search(server):
    body = _met(server, "/search", q="cypresses").json()
    assert 53426 in body["objectIDs"] and body["total"] == len(body["objectIDs"])
    assert _met(server, "/search", q="zzzz-no-such-title").json() == {"total": 0, "objectIDs": None}


def test_met_set_and_remove_record():
    old = _record(7, "2023-02-07T04:46:51.34Z", title="Cat")
    with ReplayServer([old, _record(8, "2023-02-07T04:46:51Z")], []) as srv:
        today = datetime.now(timezone.utc).date().isoformat()
        assert _met(srv, "/objects", metadataDate=today).json()["objectIDs"] is None
        stored = srv.set_met_record({**old, "title": "Cat (changed)"})
        assert stored["metadataDate"] > old["metadataDate"]
        assert _met(srv, "/objects/7").json()["title"] == "Cat (changed)"
        assert _met(srv, "/objects", metadataDate=today).json()["objectIDs"] == [7]
        # re-setting the same content keeps the date
        assert srv.set_met_record(stored)["metadataDate"] == stored["metadataDate"]
        assert srv.remove_met_record(8) and not srv.remove_met_record(8)
        assert _met(srv, "/objects/8").status_code == 404
        assert _met(srv, "/objects").json()["objectIDs"] == [7]


# ---- SMK routes ----------------------------------------------------------------------------


def test_smk_search_envelope_order_and_paging(server, smk_records):
    r = _smk(server, "/art/search/", keys="*", offset=0, rows=10, lang="en")
    body = r.json()
    assert set(body) == {"offset", "rows", "found", "items", "facets", "facets_ranges", "autocomplete"}
    assert body["found"] == len(smk_records) and body["rows"] == 10 and len(body["items"]) == 10
    numbers = [i["object_number"] for i in smk_records]
    page2 = _smk(server, "/art/search/", keys="*", offset=10, rows=10).json()
    assert [i["object_number"] for i in body["items"] + page2["items"]] == numbers[:20]
    default = _smk(server, "/art/search/", keys="*").json()
    assert default["rows"] == 10 and default["offset"] == 0


def test_smk_rows_echo_and_cap(server, smk_records):
    body = _smk(server, "/art/search/", keys="*", rows=500).json()
    assert body["rows"] == 500 and len(body["items"]) == body["found"] == len(smk_records)
    many = [{"object_number": f"S{i:05d}", "titles": [{"title": "t"}], "modified": "2020-01-01T00:00:00Z"}
            for i in range(2500)]
    with ReplayServer([], many) as srv:
        body = _smk(srv, "/art/search/", keys="*", rows=5000).json()
        assert body["found"] == 2500 and body["rows"] == 2000 and len(body["items"]) == 2000
        rest = _smk(srv, "/art/search/", keys="*", rows=2000, offset=2000).json()
        assert [i["object_number"] for i in rest["items"]] == [f"S{i:05d}" for i in range(2000, 2500)]


def test_smk_filters_and_keys(server, smk_records):
    def expect(pred):
        return [i["object_number"] for i in smk_records if pred(i)]

    got = lambda **p: [i["object_number"] for i in _smk(server, "/art/search/", rows=100, **p).json()["items"]]  # noqa: E731
    assert got(keys="*", filters="[has_image:true]") == expect(lambda i: i.get("has_image"))
    assert got(keys="*", filters="[public_domain:true]") == expect(lambda i: i.get("public_domain"))
    both = expect(lambda i: i.get("has_image") and i.get("public_domain"))
    assert got(keys="*", filters="[has_image:true],[public_domain:true]") == both
    assert 0 < len(both) < len(smk_records)
    interior = got(keys="interi")
    assert "KMS1571" in interior and "KMS1" not in interior
    empty = _smk(server, "/art/search/", keys="no-such-title-anywhere", rows=7).json()
    assert empty["found"] == 0 and empty["items"] == [] and empty["rows"] == 7


@pytest.mark.parametrize("number", ["KKSgb6775/3", "KMSst28Ø", "KMS1"])
def test_smk_object_percent_encoded(server, smk_records, number):
    r = _smk(server, "/art/", object_number=number)
    assert "%" in r.url or number == "KMS1"
    items = r.json()["items"]
    assert len(items) == 1 and items[0]["object_number"] == number
    assert items[0]["titles"] == next(i for i in smk_records if i["object_number"] == number)["titles"]


def test_smk_object_raw_slash_and_unknown(server):
    r = requests.get(server.smk_base_url + "/art/?object_number=KKSgb6775/3", timeout=T)
    assert r.json()["items"][0]["object_number"] == "KKSgb6775/3"
    assert _smk(server, "/art/", object_number="NOPE1").json() == {"items": []}


def test_smk_image_rewrite_and_iiif(server, smk_records):
    by_number = {i["object_number"]: i for i in smk_records}
    item = _smk(server, "/art/", object_number="KMS1").json()["items"][0]
    orig = by_number["KMS1"]
    assert item["image_iiif_id"] == orig["image_iiif_id"].replace(
        "https://iip.smk.dk/iiif/jp2/", server.base_url + "/iiif/")
    assert item["image_thumbnail"] == orig["image_thumbnail"].replace(
        "https://iip-thumb.smk.dk/", server.base_url + "/images/smk/")
    assert item["image_native"] == orig["image_native"].replace(
        "https://api.smk.dk/", server.base_url + "/images/smk/")
    assert item["image_iiif_info"] == orig["image_iiif_info"]  # other fields verbatim
    for url in (item["image_iiif_id"] + "/full/!1024,/0/default.jpg", item["image_thumbnail"], item["image_native"]):
        r = requests.get(url, timeout=T)
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
        Image.open(io.BytesIO(r.content)).verify()
    no_image = _smk(server, "/art/", object_number="KMSst28Ø").json()["items"][0]
    assert no_image == by_number["KMSst28Ø"]
    assert requests.get(server.base_url + "/iiif/x/info.json", timeout=T).status_code == 404


# ---- images --------------------------------------------------------------------------------


def _pixels(content: bytes) -> bytes:
    return Image.open(io.BytesIO(content)).convert("RGB").tobytes()


def test_met_images_deterministic_and_distinct(server, met_records):
    with_space = next(r for r in met_records if " " in (r["primaryImage"] or ""))
    served = _met(server, f"/objects/{with_space['objectID']}").json()
    a = requests.get(served["primaryImage"], timeout=T)
    assert a.status_code == 200 and a.headers["Content-Type"] == "image/png"
    assert requests.get(served["primaryImage"], timeout=T).content == a.content
    b = requests.get(served["primaryImageSmall"], timeout=T)
    assert _pixels(a.content) != _pixels(b.content)


def test_custom_image_bytes():
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(jpeg, format="JPEG")
    seen = []

    def image_bytes(path):
        seen.append(path)
        return jpeg.getvalue()

    with ReplayServer([], [], image_bytes=image_bytes) as srv:
        r = requests.get(srv.base_url + "/images/met/a b.jpg", timeout=T)
        assert r.headers["Content-Type"] == "image/jpeg" and r.content == jpeg.getvalue()
        assert seen == ["/images/met/a b.jpg"]  # percent-decoded path


# ---- faults --------------------------------------------------------------------------------


def test_fault_403_then_recovers(server):
    server.faults.add("403", r"/departments", count=2)
    for _ in range(2):
        r = _met(server, "/departments")
        assert r.status_code == 403 and r.headers["Content-Type"].startswith("text/html")
        assert "Access Denied" in r.text
    assert _met(server, "/objects/436535").status_code == 200  # pattern did not match
    assert _met(server, "/departments").status_code == 200
    assert len(server.faults) == 0


def _wait_until_unblocked(fw, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while fw.blocking:
        assert time.monotonic() < deadline, "the firewall's block never ended"
        time.sleep(0.05)


def test_fault_firewall_blocks_bursts(server):
    # window and block long enough that a loaded machine's slow requests still land in them
    fw = server.faults.add("firewall", r"/objects/", burst=5, window_s=10.0, block_s=2.0)
    statuses = [_met(server, "/objects/436535").status_code for _ in range(8)]
    assert statuses == [200] * 5 + [403] * 3
    assert fw.blocking
    assert _met(server, "/departments").status_code == 200  # other paths pass
    _wait_until_unblocked(fw)
    assert _met(server, "/objects/436535").status_code == 200
    assert server.count(r"/objects/436535", status=403) == 3


def test_fault_rate_firewall_lets_its_rate_through_and_blocks_when_it_runs_dry(met_records):
    with ReplayServer(met_records[:3]) as srv:
        # 5/s: the burst of 6 runs it dry unless its requests take over 80 ms each (a loaded
        # machine's are slower than unloaded ones, but not that slow); a 1 s block outlasts the
        # next request, and its Retry-After is "1" whenever that request comes
        fw = srv.faults.add("rate_firewall", r"/objects/", rate=5.0, burst=4, block_s=1.0, retry_after=True)
        assert fw.sustainable_rate == 5.0
        oid = met_records[0]["objectID"]
        statuses = [_met(srv, f"/objects/{oid}").status_code for _ in range(6)]  # a burst: 4 tokens
        assert statuses[:4] == [200] * 4 and statuses[-1] == 403 and fw.blocks == 1
        blocked = _met(srv, f"/objects/{oid}")
        assert blocked.status_code == 403 and blocked.headers["Retry-After"] == "1"
        assert _met(srv, "/departments").status_code == 200  # other paths pass
        assert fw.blocks == 1  # requests during a block do not extend it
        _wait_until_unblocked(fw)
        ok = 0
        for _ in range(10):  # at its rate, it never blocks
            ok += _met(srv, f"/objects/{oid}").status_code == 200
            time.sleep(0.22)
        assert ok == 10 and fw.blocks == 1


def test_poison_bodies(met_records):
    from artsim_pipeline_tests.replay.server import RawJson

    with ReplayServer(met_records[:3], [{"object_number": "KMS1"}]) as srv:
        srv.set_met_body(99, b"\xff[[[")
        assert 99 in srv.met_ids and _met(srv, "/objects/99").content == b"\xff[[["
        srv.smk_extra_listing += [{"no": "number"}, RawJson(b"[[[[]]]]")]
        body = requests.get(f"{srv.smk_base_url}/art/search/", params={"rows": 10}, timeout=T).json()
        assert body["found"] == 3 and body["items"][1:] == [{"no": "number"}, [[[[]]]]]


def test_fault_429_retry_after(server):
    server.faults.add("429", retry_after=3)
    r = _met(server, "/objects/436535")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert _met(server, "/objects/436535").status_code == 200


@pytest.mark.parametrize("kind", ["500", "503"])
def test_fault_server_errors(server, kind):
    server.faults.add(kind, count=None)
    assert [_smk(server, "/art/", object_number="KMS1").status_code for _ in range(3)] == [int(kind)] * 3
    server.faults.clear()
    assert _smk(server, "/art/", object_number="KMS1").status_code == 200


def test_fault_timeout(server):
    server.faults.add("timeout", delay_s=10.0)  # the client gives up long before: the delay costs nothing
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(server.met_base_url + "/departments", timeout=0.2)
    assert time.monotonic() - t0 < 5  # it timed out rather than waiting for the held answer
    assert _met(server, "/departments").status_code == 200  # answered normally afterwards


def test_fault_truncated(server):
    server.faults.add("truncated", r"/objects/436535")
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        _met(server, "/objects/436535")
    raw = requests.get(server.met_base_url + "/objects/436535", stream=True, timeout=T)
    assert raw.status_code == 200 and int(raw.headers["Content-Length"]) == len(raw.content)


def test_fault_corrupt_image(server):
    server.faults.add("corrupt_image")  # matches everything, but only images are corrupted
    assert _met(server, "/departments").status_code == 200
    url = _met(server, "/objects/436535").json()["primaryImage"]
    r = requests.get(url, timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/")
    with pytest.raises(Exception):
        Image.open(io.BytesIO(r.content)).load()
    assert _pixels(requests.get(url, timeout=T).content)  # next one is fine


def test_fault_reset(server):
    server.faults.add("reset", r"/art/search")
    with pytest.raises(requests.exceptions.ConnectionError):
        _smk(server, "/art/search/", keys="*")
    assert server.requests[-1][:3] == ("GET", "/api/v1/art/search/?keys=%2A", 0)
    assert _smk(server, "/art/search/", keys="*").status_code == 200


def test_fault_validation(server):
    with pytest.raises(ValueError):
        server.faults.add("418")
    with pytest.raises(TypeError):
        server.faults.add("429", retry_afterr=2)
    with pytest.raises(ValueError):
        server.faults.add("500", count=0)


def test_faults_thread_safe_counts(server):
    server.faults.add("500", r"/objects/", count=10)
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: _met(server, "/objects/436535").status_code, range(40)))
    assert codes.count(500) == 10 and codes.count(200) == 30
    assert server.count(r"^/public/collection/v1/objects/436535$") == 40


# ---- log, latency, shutdown ----------------------------------------------------------------


def test_request_log(server):
    t0 = time.time()
    _met(server, "/objects/436535")
    _met(server, "/objects/1")
    _smk(server, "/art/", object_number="KMSst28Ø")
    method, path, status, ts = server.requests[0]
    assert (method, path, status) == ("GET", "/public/collection/v1/objects/436535", 200) and ts >= t0
    assert server.requests[1].status == 404
    assert server.requests[2].path == "/api/v1/art/?object_number=KMSst28%C3%98"
    assert server.count(r"/objects/\d+") == 2 and server.count(r"/objects/", status=404) == 1


def test_latency():
    with ReplayServer([_record(1, "2024-01-01T00:00:00Z")], [], latency_s=0.2) as srv:
        t0 = time.monotonic()
        assert _met(srv, "/objects/1").status_code == 200
        assert time.monotonic() - t0 >= 0.2


def test_clean_shutdown():
    before = set(threading.enumerate())
    srv = ReplayServer([_record(1, "2024-01-01T00:00:00Z")], [])
    session = requests.Session()  # keeps a connection (and a handler thread) alive
    assert session.get(srv.met_base_url + "/objects/1", timeout=T).status_code == 200
    srv.faults.add("timeout", delay_s=30)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(srv.met_base_url + "/objects/1", timeout=0.1)
    t0 = time.monotonic()
    srv.stop()
    srv.stop()  # idempotent
    # promptly: not after the 30 s the handler sleeps, nor the 60 s an idle kept-alive connection
    # lasts (a handler stop() gave up on after its 2 s join is still alive below)
    assert time.monotonic() - t0 < 5
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(srv.met_base_url + "/objects/1", timeout=T)
    deadline = time.monotonic() + 5  # a thread past its last line may still need a moment to end
    while (leftover := [t for t in set(threading.enumerate()) - before if t.is_alive()]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftover == []
