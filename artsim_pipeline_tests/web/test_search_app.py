"""Search in `artsim serve` through FastAPI's TestClient: `/api/search` (the same function as
`artsim search`), the search page and its filters, filters on a work's similar-works page, and
"search by image" uploads (limits, clear refusals, nothing stored)."""

from __future__ import annotations

import io
import os
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from artsim_pipeline.core.text_search import RESULT_KEYS, SearchFilters, public
from artsim_pipeline.web.app import create_app
from artsim_pipeline.web.search_routes import MAX_UPLOAD_BYTES
from artsim_pipeline_tests.search_home import EVIL, build_search_home, save_tiny_clip


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("search_app")
    facts = build_search_home(root / "home", save_tiny_clip(root / "clip"))
    return root / "home", facts


@pytest.fixture(scope="module")
def client(built):
    with TestClient(create_app(built[0])) as c:
        yield c


def ids(response) -> list[str]:
    return [r["artwork_id"] for r in response.json()]


# -- /api/search ------------------------------------------------------------------------------------


def test_api_search_is_the_cli_search(client, built):
    r = client.get("/api/search", params={"q": "feline", "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert len(body) == 3 and all(list(w) == list(RESULT_KEYS) for w in body)
    assert {"met:11", "met:16"} <= set(ids(r))  # a cat and a tiger, though no work says "feline"
    from artsim_pipeline.service import SimilarityService

    assert body == [public(x) for x in SimilarityService(built[0]).search("feline", 3)]


def test_api_search_filters(client):
    assert set(ids(client.get("/api/search", params={"q": "feline", "source": "smk"}))) <= {"smk:KMS1", "smk:KMS20", "smk:KMS21",
                                                                                          "smk:KKSgb6775/3", "smk:KMS22"}
    kinds = client.get("/api/search", params={"q": "feline", "type": "DRAWINGS"}).json()
    assert kinds and {w["classification"] for w in kinds} == {"Drawings"}
    dated = client.get("/api/search", params={"q": "madonna", "from": "1495", "to": "1600"})
    assert ids(dated) == ["met:13"]
    assert ids(client.get("/api/search", params={"q": "KMS20"}))[0] == "smk:KMS20"


@pytest.mark.parametrize("params, status, message", [
    ({"q": ""}, 422, "empty"),
    ({"q": "   "}, 422, "empty"),
    ({"q": "cat", "type": "Photographs"}, 422, "no works of kind"),
    ({"q": "cat", "from": "1900", "to": "1800"}, 422, "'from' is after 'to'"),
    ({"q": "cat", "from": "soon"}, 422, "must be a year"),
    ({"q": "cat", "source": "louvre"}, 422, "museum must be one of"),
    ({"q": "cat", "source": "smk", "type": "Paintings"}, 422, "no work matches these filters"),
])
def test_api_search_refuses_what_cannot_be_answered(client, params, status, message):
    r = client.get("/api/search", params=params)
    assert r.status_code == status and message in r.json()["error"]


def test_api_search_bounds_k(client):
    assert client.get("/api/search", params={"q": "cat", "k": 0}).status_code == 422
    assert client.get("/api/search", params={"q": "cat", "k": 101}).status_code == 422
    assert len(client.get("/api/search", params={"q": "cat", "k": 2}).json()) == 2


# -- the search page -------------------------------------------------------------------------------------


def test_search_page_shows_ranked_works_and_keeps_the_filters(client):
    page = client.get("/", params={"q": "mother holding her infant", "source": "met", "type": "paintings"})
    assert page.status_code == 200
    assert "The Virgin and Child" in page.text and "Madonna med barnet" not in page.text
    assert "found by meaning #1" in page.text
    assert '<option value="met" selected>' in page.text and 'value="paintings"' in page.text
    assert '<option value="Paintings">' in page.text  # the kinds the collection has, offered to pick from
    bad = client.get("/", params={"q": "cat", "from": "1900", "to": "1800"})
    assert bad.status_code == 422 and "&#39;from&#39; is after &#39;to&#39;" in bad.text
    for q in ("alert", EVIL):
        escaped = client.get("/", params={"q": q})
        assert escaped.status_code == 200 and EVIL not in escaped.text
    assert 'action="/search/image"' in client.get("/").text and 'enctype="multipart/form-data"' in client.get("/").text


def test_similar_works_page_filters(client):
    smk = client.get("/work/met:1", params={"source": "smk"})
    assert smk.status_code == 200 and "Most similar at smk" in smk.text and "Most similar at met" not in smk.text
    assert "clear filters" in smk.text
    paintings = client.get("/work/met:1", params={"type": "Paintings", "to": "1800"})
    assert paintings.status_code == 200
    for title in ("Lion Attacking a Horse", "The Virgin and Child", "Portrait of a Woman"):
        assert title in paintings.text
    for title in ("Irises", "Sleeping Cat", "Interiør, Strandgade 30"):  # too late, or not a painting
        assert f">{title}<" not in paintings.text
    bad = client.get("/work/met:1", params={"type": "Photographs"})
    assert bad.status_code == 422 and "no works of kind" in bad.text and "Wheat Field with Cypresses" in bad.text


# -- search by image ----------------------------------------------------------------------------------------


def upload(client, data: bytes, filename: str = "query.png", content_type: str = "image/png", **fields):
    return client.post("/search/image", files={"image": (filename, data, content_type)}, data=fields)


def test_upload_finds_the_pictured_work(client, built):
    _, facts = built
    r = upload(client, facts["images"]["met:10"])
    assert r.status_code == 200
    assert r.text.index("Lion Attacking a Horse") < r.text.index("Sleeping Cat")
    assert "most like your image" in r.text and "1.000" in r.text
    smk = upload(client, facts["images"]["met:10"], source="smk")
    assert smk.status_code == 200 and "Lion Attacking a Horse" not in smk.text and "Løve" in smk.text


def _png(width: int, height: int, marker: str = "") -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if marker:
        info.add_text("marker", marker)
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 30, 160)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


@pytest.mark.parametrize("make, status, message", [
    (lambda: b"just some text, not a picture", 415, "not an image this app can read"),
    (lambda: _png(8000, 6000), 413, "million"),  # 48 megapixels in a few kilobytes
    (lambda: b"\x89PNG" + b"\0" * (MAX_UPLOAD_BYTES + 10), 413, "larger than 8 MB"),
    (lambda: b"", 400, "choose an image file"),
])
def test_upload_refusals_are_clear(client, make, status, message):
    r = upload(client, make())
    assert r.status_code == status and message in r.text and 'class="error"' in r.text


def test_upload_needs_a_form_and_valid_filters(client, built):
    r = client.post("/search/image", content=b"raw bytes", headers={"content-type": "application/octet-stream"})
    assert r.status_code == 415 and "multipart/form-data" in r.text
    bad = upload(client, built[1]["images"]["met:10"], **{"from": "1900", "to": "1800"})
    assert bad.status_code == 422 and "&#39;from&#39; is after &#39;to&#39;" in bad.text


def test_uploads_are_never_stored(client, built):
    home = built[0]
    marker = uuid.uuid4().hex
    before = time.time() - 1
    r = upload(client, _png(64, 48, marker))
    assert r.status_code == 200
    needle = marker.encode()
    for root in (home, Path(tempfile.gettempdir())):
        for dirpath, _, files in os.walk(root):
            for name in files:
                path = Path(dirpath, name)
                try:
                    if path.stat().st_mtime < before or path.stat().st_size > 50 * 2**20 or not path.is_file():
                        continue
                    assert needle not in path.read_bytes(), f"the upload was written to {path}"
                except (PermissionError, FileNotFoundError):
                    continue


def test_filters_reach_similar_works_of_an_image(built):
    from artsim_pipeline.service import SimilarityService

    service = SimilarityService(built[0])
    vector = built[1]["image_vectors"]["met:10"]
    found = service.similar_to_vector(vector, 20, filters=SearchFilters(kind="maleri"))
    assert found and {w["artwork_id"] for w in found} <= {"smk:KMS1", "smk:KMS20", "smk:KMS21"}
