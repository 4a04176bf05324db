"""The `artsim serve` web app, through FastAPI's TestClient over a tiny home built here."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from artsim_pipeline.resources import artefacts as store
from artsim_pipeline.core.ann import build_index
from artsim_pipeline.web.app import create_app, shared_metadata
from artsim_pipeline_tests.search_home import write_search_index

EVIL = "<script>alert(1)</script>"
SHA = "ab" + "0" * 62
JPEG = b"\xff\xd8\xff\xe0fake-jpeg"


def _works() -> list[dict]:
    rows = [
        dict(artwork_id="met:1", title="Wheat Field with Cypresses", artists=["Vincent van Gogh"], culture=None,
             classification="Paintings", tags=["Landscapes", "Cypresses"], date_begin=1889, date_end=1889,
             image_sha256=SHA),
        dict(artwork_id="met:2", title="Irises", artists=["Vincent van Gogh"], culture=None,
             classification="Paintings", tags=["Flowers"], date_begin=1890, date_end=1890),
        dict(artwork_id="met:3", title=EVIL, artists=["<b>Evil</b> & Co"], culture="Attic",
             classification="Vases", tags=[], date_begin=-530, date_end=-520),
        dict(artwork_id="smk:KMS1", title="Interiør, Strandgade 30", artists=["Vilhelm Hammershøi"], culture="Danish",
             classification="maleri", tags=["landscapes"], date_begin=1885, date_end=1900),
        dict(artwork_id="smk:KKSgb6775/3", title="Landskab med cypresser", artists=["van Gogh, Vincent"],
             culture="Danish", classification="tegning", tags=["Cypresses"], date_begin=1880, date_end=1889),
    ]
    rows += [
        dict(artwork_id=f"smk:KMS{i}", title=f"Study {i}", artists=[f"Painter {i}"], culture="Danish",
             classification="maleri", tags=[], date_begin=1800 + i, date_end=1810 + i)
        for i in range(10, 18)
    ]
    for r in rows:
        src, sid = r["artwork_id"].split(":", 1)
        r.update(source=src, source_id=sid, department=None, date_text=str(r["date_begin"]),
                 landing_url=f"https://example.org/{sid}", image_sha256=r.get("image_sha256"))
    return rows


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return build_home(tmp_path_factory.mktemp("home"))


def build_home(home):
    """Artworks, vectors, an index and one image under `home`, as the pipeline stores them."""
    rows = _works()
    frame = pl.DataFrame(rows, schema_overrides={"date_begin": pl.Int32, "date_end": pl.Int32})
    (home / "storage" / "artworks").mkdir(parents=True)
    for src in ("met", "smk"):
        frame.filter(pl.col("source") == src).write_parquet(home / "storage" / "artworks" / f"{src}.parquet")
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(rows), 8)).astype(np.float32)
    vecs[1] = vecs[0] + 0.05  # Irises right next to the wheat field
    vecs[4] = vecs[0] + 0.10  # and the SMK cypress drawing close too
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [r["artwork_id"] for r in rows]
    pl.DataFrame({"artwork_id": ids, "vector": vecs.tolist()}).write_parquet(home / "storage" / "artwork_vectors.parquet")
    store.write_ann_index(build_index(ids, vecs), home / "indexes" / "ann_index")
    (home / "images" / SHA[:2]).mkdir(parents=True)
    (home / "images" / SHA[:2] / f"{SHA}.jpg").write_bytes(JPEG)
    (home / "storage" / "secret.txt").write_text("do not serve")
    write_search_index(home, frame)
    return home


@pytest.fixture(scope="module")
def client(home):
    with TestClient(create_app(home)) as c:
        yield c


def test_search(client):
    r = client.get("/api/search", params={"q": "GOGH"})
    assert r.status_code == 200
    assert {w["artwork_id"] for w in r.json()[:3]} == {"met:1", "met:2", "smk:KKSgb6775/3"}  # the maker's works first
    assert client.get("/api/search", params={"q": "strandgade"}).json()[0]["artwork_id"] == "smk:KMS1"
    assert client.get("/api/search", params={"q": ""}).status_code == 422  # more in test_search_app.py
    page = client.get("/", params={"q": "cypress"})
    assert page.status_code == 200 and "Wheat Field with Cypresses" in page.text
    assert 'href="/work/smk:KKSgb6775%2F3"' in page.text


def test_similar_json(client):
    r = client.get("/api/similar/met:1", params={"k": 3})
    assert r.status_code == 200
    body = r.json()
    assert len(body) == 3 and body[0]["artwork_id"] == "met:2"
    assert set(body[0]) == {"artwork_id", "score", "title", "artists", "source", "landing_url"}
    assert all("met:1" != w["artwork_id"] for w in body)
    assert body[0]["score"] >= body[1]["score"] >= body[2]["score"]
    smk = client.get("/api/similar/met:1", params={"k": 2, "source": "smk"}).json()
    assert [w["source"] for w in smk] == ["smk", "smk"] and smk[0]["artwork_id"] == "smk:KKSgb6775/3"
    # ids holding a slash work in the path
    assert client.get("/api/similar/smk:KKSgb6775/3", params={"k": 1}).status_code == 200


@pytest.mark.parametrize("bad", ["met:999", "nope", "met:%3Cscript%3E"])
def test_unknown_id_is_a_json_404(client, bad):
    r = client.get(f"/api/similar/{bad}")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    assert "unknown artwork id" in r.json()["error"]
    assert client.get(f"/work/{bad}").status_code == 404


def test_bad_parameters(client):
    assert client.get("/api/similar/met:1", params={"k": 0}).status_code == 422
    assert client.get("/api/similar/met:1", params={"k": 10_000}).status_code == 422
    assert client.get("/api/similar/met:1", params={"source": "louvre"}).status_code == 422


def test_work_page_explains_links_and_escapes(client):
    r = client.get("/work/met:1")
    assert r.status_code == 200
    assert "Most similar at met" in r.text and "Most similar at smk" in r.text
    assert "same maker: Vincent van Gogh" in r.text  # "van Gogh, Vincent" at SMK matches too
    assert "tags: Cypresses" in r.text and "dates overlap: 1889" in r.text
    assert re.search(r'class="score"[^>]*>0\.\d{3}<', r.text)
    assert f'src="/images/{SHA}"' in r.text
    evil = client.get("/work/met:3")
    assert evil.status_code == 200 and EVIL not in evil.text and "<b>Evil</b>" not in evil.text
    assert html.escape(EVIL) in evil.text
    assert "script-src 'none'" in evil.headers["content-security-policy"]
    for page in (client.get("/", params={"q": "alert"}), client.get("/", params={"q": EVIL})):
        assert page.status_code == 200 and EVIL not in page.text


def test_shared_metadata():
    a = dict(artists=["Vincent van Gogh"], culture="Danish", classification="Paintings", department=None,
             tags=["Cypresses", "Sky"], date_begin=1880, date_end=1890)
    b = dict(artists=["van Gogh, Vincent", "Anonymous"], culture="danish", classification="Drawings",
             tags=["cypresses"], date_begin=1889, date_end=1895)
    assert shared_metadata(a, b) == {"makers": ["Vincent van Gogh"], "culture": "Danish",
                                     "tags": ["Cypresses"], "dates": "1889–1890"}
    assert shared_metadata(a, {"date_begin": -500, "date_end": -400}) == {}


def test_images_by_sha_only(client):
    r = client.get(f"/images/{SHA}")
    assert r.status_code == 200 and r.content == JPEG and r.headers["content-type"] == "image/jpeg"
    assert client.get(f"/images/{SHA}.jpg").status_code == 200
    assert client.get("/images/" + "c" * 64).status_code == 404
    for bad in ("../storage/secret.txt", "..%2fstorage%2fsecret.txt", "%2e%2e%2fstorage%2fsecret.txt",
                "ab/" + SHA, SHA + "/../../storage/secret.txt", "%2Fetc%2Fpasswd", "x" * 64):
        r = client.get(f"/images/{bad}")
        assert r.status_code in (400, 404), bad
        assert b"do not serve" not in r.content and b"root:" not in r.content


ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def browser_like(home):
    """A client on this server's own origin, as its pages are (Host 127.0.0.1:8000, Origin sent)."""
    with TestClient(create_app(home), base_url=ORIGIN, headers={"origin": ORIGIN}) as c:
        yield c


def take_task(c, anchor="met:1") -> dict:
    r = c.get("/api/feedback/task", params={"anchor": anchor})
    assert r.status_code == 200, r.text
    return r.json()


def answer(c, task, chosen=None, **extra):
    body = {"task_id": task["task_id"], "chosen_id": chosen or task["candidate_ids"][0], **extra}
    return c.post("/api/feedback", json=body, headers={"x-csrf-token": task["csrf_token"]})


def test_feedback_round_trip(browser_like, home):
    client = browser_like
    task = take_task(client)
    cands = task["candidate_ids"]
    assert len(cands) == 8 and "met:1" not in cands and "met:2" in cands
    again = take_task(client)
    assert again["candidate_ids"] == cands and again["task_id"] != task["task_id"]  # same candidates, a new task
    page = client.get("/feedback", params={"anchor": "met:1"})
    assert page.status_code == 200 and page.text.count('type="radio"') == 8
    assert [html.unescape(v) for v in re.findall(r'name="candidate_ids" value="([^"]+)"', page.text)] == cands
    assert client.get("/feedback").status_code == 200  # a random anchor
    assert client.get("/feedback", params={"anchor": "met:999"}).status_code == 404

    r = answer(client, task, "met:2", anchor_id="met:1", candidate_ids=cands, curator="Ída <i>")
    assert r.status_code == 201, r.text
    saved = store.load_judgments(home)
    assert saved.filter(pl.col("judgment_id") == r.json()["judgment_id"]).row(0, named=True)["curator"] == "Ída <i>"
    assert answer(client, task, "met:2").status_code == 403  # a task is answered once
    # the HTML form posts urlencoded fields (with the page's task and token) and is sent on to the next task
    form_task = re.search(r'name="task_id" value="([^"]+)"', page.text).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = [("anchor_id", "met:1"), *[("candidate_ids", c) for c in cands], ("chosen_id", cands[-1]), ("curator", "bo"),
            ("task_id", form_task), ("csrf_token", token)]
    r = client.post("/api/feedback", content=urlencode(form).encode(), follow_redirects=False,
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303 and r.headers["location"].startswith("/feedback?")
    listed = client.get("/api/feedback").json()
    assert listed["count"] == store.load_judgments(home).height >= 2
    assert listed["judgments"][-1]["chosen_id"] == cands[-1]
    page = client.get("/feedback", params={"anchor": "met:3", "curator": "Ída <i>"})
    assert "Ída <i>" not in page.text and "Ída &lt;i&gt;" in page.text


@pytest.mark.parametrize(
    "payload",
    [
        {"chosen_id": "met:1"},  # pick not a candidate
        {"chosen_id": "met:999"},  # not a candidate either
        {"candidate_ids": ["met:2", "met:3"]},  # not the task's candidates
        {"anchor_id": "met:3"},  # not the task's anchor
        {"candidate_ids": "met:2"},
        {"anchor_id": "<x>"},
        {"curator": 5},
    ],
)
def test_feedback_validation(browser_like, home, payload):
    before = store.load_judgments(home).height
    task = take_task(browser_like)
    r = answer(browser_like, task, **{"chosen_id": task["candidate_ids"][0], **payload})
    assert r.status_code == 422, r.text
    assert store.load_judgments(home).height == before
    assert answer(browser_like, task).status_code == 201  # a refused answer does not spend the task


def test_feedback_rejects_garbage_and_cross_origin(browser_like, home):
    before = store.load_judgments(home).height
    task = take_task(browser_like)
    headers = {"x-csrf-token": task["csrf_token"], "content-type": "application/json"}
    assert browser_like.post("/api/feedback", content=b"{", headers=headers).status_code == 400
    r = answer(browser_like, task)
    assert r.status_code == 201
    evil = browser_like.post("/api/feedback", json={"task_id": take_task(browser_like)["task_id"], "chosen_id": "met:2"},
                             headers={"origin": "https://evil.example", "x-csrf-token": task["csrf_token"]})
    assert evil.status_code == 403
    assert store.load_judgments(home).height == before + 1


# -- issue 17: each way around the feedback checks ---------------------------------------------------


def test_feedback_needs_an_origin_that_is_this_site(home):
    with TestClient(create_app(home), base_url=ORIGIN) as c:  # no Origin header by default
        task = take_task(c)
        before = store.load_judgments(home).height
        assert answer(c, task).status_code == 403  # missing Origin
        for origin in ("null", "http://127.0.0.1:8001", "https://127.0.0.1:8000", "http://evil.example", "http://localhost:8000"):
            r = c.post("/api/feedback", json={"task_id": task["task_id"], "chosen_id": task["candidate_ids"][0]},
                       headers={"x-csrf-token": task["csrf_token"], "origin": origin})
            assert r.status_code == 403, origin
        r = c.post("/api/feedback", json={"task_id": task["task_id"], "chosen_id": task["candidate_ids"][0]},
                   headers={"x-csrf-token": task["csrf_token"], "origin": ORIGIN, "sec-fetch-site": "cross-site"})
        assert r.status_code == 403
        assert store.load_judgments(home).height == before
        r = c.post("/api/feedback", json={"task_id": task["task_id"], "chosen_id": task["candidate_ids"][0]},
                   headers={"x-csrf-token": task["csrf_token"], "origin": ORIGIN, "sec-fetch-site": "same-origin"})
        assert r.status_code == 201


def test_feedback_refuses_dns_rebinding(home):
    """The attacker's page is served under its own name resolving to 127.0.0.1: Host and Origin agree."""
    rebound = "http://attacker.example:8000"
    with TestClient(create_app(home), base_url=rebound, headers={"origin": rebound}) as c:
        assert c.get("/api/feedback/task", params={"anchor": "met:1"}).status_code == 400  # no task, no token
        assert c.get("/feedback", params={"anchor": "met:1"}).status_code == 400
        with TestClient(create_app(home), base_url=ORIGIN, headers={"origin": ORIGIN}) as own:
            task = take_task(own)  # even with a real task and token from elsewhere
        r = c.post("/api/feedback", json={"task_id": task["task_id"], "chosen_id": task["candidate_ids"][0]},
                   headers={"x-csrf-token": task["csrf_token"]})
        assert r.status_code == 403 and "Host" in r.json()["error"]
    with TestClient(create_app(home, allowed_hosts=["curators.example"]), base_url="http://curators.example",
                    headers={"origin": "http://curators.example"}) as named:
        assert answer(named, take_task(named)).status_code == 201  # a name the operator allowed


def test_feedback_needs_the_session_token(browser_like, home):
    task = take_task(browser_like)
    body = {"task_id": task["task_id"], "chosen_id": task["candidate_ids"][0]}
    assert browser_like.post("/api/feedback", json=body).status_code == 403  # no token
    assert browser_like.post("/api/feedback", json=body, headers={"x-csrf-token": "0" * 64}).status_code == 403
    # a token is bound to its session: another browser's token does not work with this cookie
    with TestClient(create_app(home), base_url=ORIGIN, headers={"origin": ORIGIN}) as other:
        other_token = take_task(other)["csrf_token"]
    assert browser_like.post("/api/feedback", json=body, headers={"x-csrf-token": other_token}).status_code == 403
    assert browser_like.post("/api/feedback", json={**body, "csrf_token": task["csrf_token"]}).status_code == 201


def test_a_judgment_must_answer_a_task_issued_to_this_session(browser_like, home):
    before = store.load_judgments(home).height
    task = take_task(browser_like)
    # two works the server never asked about
    forged = {"anchor_id": "met:3", "candidate_ids": ["smk:KMS10", "smk:KMS11"], "chosen_id": "smk:KMS10"}
    assert browser_like.post("/api/feedback", json=forged, headers={"x-csrf-token": task["csrf_token"]}).status_code == 403
    assert browser_like.post("/api/feedback", json={**forged, "task_id": "made-up"},
                             headers={"x-csrf-token": task["csrf_token"]}).status_code == 403
    # a task issued to another session cannot be answered from this one
    with TestClient(create_app(home), base_url=ORIGIN, headers={"origin": ORIGIN}) as other:
        foreign = take_task(other)
    assert answer(browser_like, {**foreign, "csrf_token": task["csrf_token"]}).status_code == 403
    assert store.load_judgments(home).height == before


@pytest.fixture(scope="module")
def live_server(home):
    """The app under a real uvicorn on a free loopback port (TestClient buffers request bodies)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(home), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def test_feedback_body_size_is_checked_while_reading(live_server, browser_like):
    """A 40 MB chunked body with no Content-Length: the 413 arrives while it is still being sent."""
    import select
    import socket

    port = live_server
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall((f"POST /api/feedback HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
    chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"
    sent = answer = 0
    try:
        for sent in range(1, 10_001):
            sock.sendall(chunk)
            if select.select([sock], [], [], 0.01)[0]:
                answer = sock.recv(65536)
                break
    except (BrokenPipeError, ConnectionResetError):
        answer = sock.recv(65536)
    finally:
        sock.close()
    assert answer and answer.split(b"\r\n", 1)[0].endswith(b"413 Request Entity Too Large"), answer[:100]
    assert sent * 4096 < 2 * 2**20  # answered within the first 2 MB of 40 MB (the limit is 64 KiB)
    # a declared length over the limit is refused before anything is read
    task = take_task(browser_like)
    headers = {"x-csrf-token": task["csrf_token"], "content-type": "application/json"}
    r = browser_like.post("/api/feedback", content=b"{}", headers={**headers, "content-length": str(300 * 2**20)})
    assert r.status_code == 413


@pytest.mark.parametrize("body", [
    b'{"task_id": "x", "chosen_id": "met:2", "curator": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"task_id": "x", "chosen_id": "met:2", "curator": "\\udfff"}',
    b'{"task_id": "x", "chosen_id": "met:2", "curator": "\xff\xfe"}',
    b'[1, 2]',
])
def test_malformed_feedback_is_a_400(browser_like, body):
    task = take_task(browser_like)
    body = body.replace(b'"x"', b'"' + task["task_id"].encode() + b'"')
    r = browser_like.post("/api/feedback", content=body, headers={"x-csrf-token": task["csrf_token"], "content-type": "application/json"})
    assert r.status_code == 400, r.text
    form = b"task_id=" + task["task_id"].encode() + b"&chosen_id=met%3A2&curator=%ED%BF%BF&csrf_token=" + task["csrf_token"].encode()
    r = browser_like.post("/api/feedback", content=form, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400, r.text  # a percent-encoded lone surrogate


def test_not_built_home_answers_503(tmp_path):
    with TestClient(create_app(tmp_path)) as c:
        r = c.get("/api/similar/met:1")
        assert r.status_code == 503 and "make run" in r.json()["error"]
        assert c.get("/", params={"q": "x"}).status_code == 503


def test_no_page_or_api_error_shows_a_filesystem_path(tmp_path):
    home = tmp_path / "secret-home-name"
    home.mkdir()
    with TestClient(create_app(home), base_url=ORIGIN) as c:
        answers = [c.get("/api/similar/met:1"), c.get("/work/met:1"), c.get("/feedback"), c.get("/api/feedback/task"),
                   c.get("/", params={"q": "x"}), c.get("/api/search", params={"q": "x"}), c.get("/images/" + "a" * 64)]
        for r in answers:
            assert r.status_code >= 400, r.request.url
            assert str(tmp_path) not in r.text and "secret-home-name" not in r.text, (r.request.url, r.text)
        assert any(r.status_code == 503 for r in answers)


def test_each_recorded_judgment_is_published_to_the_storage(home, monkeypatch):
    """In prod the app is given the (S3) storage; every judgment it records is published there."""
    published = []

    from artsim_pipeline.resources.storage import ArtsimStorage

    given = ArtsimStorage(home=str(home))

    def publish_judgments(storage, journal_home):
        assert storage is given
        published.append(store.load_judgments(journal_home).height)

    monkeypatch.setattr(store, "publish_judgments", publish_judgments)
    with TestClient(create_app(home, storage=given), base_url=ORIGIN, headers={"origin": ORIGIN}) as c:
        task = take_task(c)
        r = answer(c, task)
        assert r.status_code == 201, r.text
        assert answer(c, take_task(c), "met:1").status_code == 422
    assert published == [store.load_judgments(home).height]  # once, after the append; a refused judgment publishes nothing
