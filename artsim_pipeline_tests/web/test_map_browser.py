"""The chunked collection map served by `artsim serve` at /map, in a real headless Chromium.

The map is built from made-up points (four large groups and one small group of works far from
them) and stored the way the `collection_map` asset stores it; the similar-works index is built
over matching vectors, so a clicked work lists its nearest works. Checked: the points are drawn
from binary chunks (no title or thumbnail in the page), a thumbnail is asked for only after
zooming in, and a click fetches and shows the work's details and its nearest works.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core.ann import AnnConfig, build_index
from artsim_pipeline.core.collection_map.chunks import build_chunked_map
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline_tests.servers import artsim_serve
from artsim_pipeline_tests.web.test_browser import _INKED_PIXELS_JS, _shot, browser, tab  # noqa: F401 - fixtures

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect
except ImportError:  # reported by the `browser` fixture as a failure
    expect = None
    PlaywrightTimeoutError = TimeoutError

SAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "artsim_pipeline" / "sample" / "images"
EVIL = "<img src=x onerror=alert(1)>"
N_GROUPS, PER_GROUP, FAR = 4, 300, 6  # 1,206 works in 4 chunks of 400


@pytest.fixture(scope="module")
def map_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("map-home")
    storage = ArtsimStorage(home=str(home))
    rng = np.random.default_rng(4)
    images = []
    for path in sorted(SAMPLE_IMAGES.glob("*.jpg"))[:FAR]:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        artefacts.write_image(storage, f"{sha[:2]}/{sha}.jpg", data)
        images.append(f"{sha[:2]}/{sha}.jpg")
    centres = [(-5.0, -5.0), (5.0, -5.0), (-5.0, 5.0), (5.0, 2.0)]
    xy = np.vstack([rng.normal(c, 1.0, size=(PER_GROUP, 2)) for c in centres] + [rng.normal((9.0, 9.0), 0.05, size=(FAR, 2))])
    n = len(xy)
    dim = 16
    directions = np.eye(dim)[: N_GROUPS + 1] * 4
    group = np.concatenate([np.repeat(np.arange(N_GROUPS), PER_GROUP), np.full(FAR, N_GROUPS)])
    vectors = (directions[group] + rng.normal(scale=0.3, size=(n, dim))).astype(np.float32)
    ids = [f"met:{i}" for i in range(n)]
    far = list(range(n - FAR, n))
    points = pl.DataFrame({
        "artwork_id": ids, "x": xy[:, 0], "y": xy[:, 1],
        "source": ["met" if i % 2 else "smk" for i in range(n)],
        "department": [f"Dept {g}" for g in group],
        "cluster": group.tolist(),
        "title": [EVIL if i == far[0] else f"Far work {i}" if i in far else f"Work {i}" for i in range(n)],
        "artists": [["Vilhelm Hammershøi"] if i in far else [f"Maker {i % 9}"] for i in range(n)],
        "date_text": ["1900"] * n,
        "landing_url": [f"https://example.org/{i}" for i in range(n)],
        "image_path": [images[far.index(i)] if i in far else None for i in range(n)],
    })
    manifest, chunks, details = build_chunked_map(points, chunk_points=400, method="umap")
    artefacts.save_chunked_map(storage, manifest, chunks, details)
    # built on one thread: the graph is then the same every run (threads insert in the order the
    # machine's load gives them; one full-suite run found the far group's 6th work unreachable)
    artefacts.save_ann_index(storage, build_index(ids, vectors, AnnConfig(num_threads=1)))
    return home, manifest, far


def _get(url: str):
    """(status, headers, body) of a GET, error statuses included."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as r:  # the server may be slow on a busy machine
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def manifest_details(server: str) -> str:
    """The details version the stored manifest names (what the viewer sends with each row)."""
    import json

    return json.loads(_get(server + "/map/data/manifest.json")[2])["details"]


@pytest.fixture(scope="module")
def map_server(map_home, tmp_path_factory):
    with artsim_serve(map_home[0], tmp_path_factory.mktemp("map-serve")) as base:
        yield base


def test_chunked_map_draws_loads_thumbnails_lazily_and_shows_details_on_click(tab, map_server, map_home, tmp_path):  # noqa: F811
    _, manifest, far = map_home
    page = tab.page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url[len(map_server):]))
    page.goto(map_server + "/map")
    page.wait_for_function(f"() => window.artsimMap && window.artsimMap.loadedChunks === {len(manifest['chunks'])}")
    expect(page.locator("#status")).to_have_text(f"{manifest['n']:,} works · projection: umap")
    state = page.evaluate("() => ({first: window.artsimMap.firstDrawMs, drawn: window.artsimMap.drawnPoints})")
    assert state["first"] is not None and state["drawn"] == manifest["n"]
    assert page.evaluate(_INKED_PIXELS_JS) > 4 * manifest["n"] * 0.5  # 2x2 px per point, some overlap
    chunk_requests = [u for u in requests if u.startswith("/map/data/chunks/")]
    assert sorted(chunk_requests) == sorted(f"/map/data/chunks/{c['file']}" for c in manifest["chunks"])
    html = page.content()
    assert "Far work" not in html and "data:image" not in html  # titles and images are not in the page
    assert not any("/map/thumb/" in u for u in requests)  # 1,206 points in view: no thumbnail yet
    assert not any("/map/api/point/" in u for u in requests)
    _shot(page, tmp_path / "chunked-map.png")

    # zoom into the small far group: few points in view, so their thumbnails are asked for
    target = far[1]
    for _ in range(30):
        x, y = page.evaluate("(row) => window.artsimMap.screenOf(row)", target)
        before = page.evaluate("() => window.artsimMap.drawnPoints")
        page.mouse.move(x, y)
        page.mouse.wheel(0, -400)
        try:  # wait for the redraw the step caused; a step that leaves as many points in view changes nothing
            page.wait_for_function("(n) => window.artsimMap.drawnPoints !== n", arg=before, timeout=1000)
        except PlaywrightTimeoutError:
            pass
        if page.evaluate("() => window.artsimMap.drawnPoints") <= 300:
            break
    try:  # a redraw slower than the 1 s a step waits (a busy machine) is still to come
        page.wait_for_function("() => window.artsimMap.drawnPoints <= 300")
    except PlaywrightTimeoutError:
        pass
    assert page.evaluate("() => window.artsimMap.drawnPoints") <= 300
    page.wait_for_function("() => window.artsimMap.thumbsLoaded > 0")
    version = "?map=" + manifest_details(map_server)
    thumb_requests = {u for u in requests if u.startswith("/map/thumb/")}
    assert thumb_requests and thumb_requests <= {f"/map/thumb/{r}{version}" for r in far}
    _shot(page, tmp_path / "chunked-map-zoomed.png")

    # hover: title and maker fetched for that point
    x, y = page.evaluate("(row) => window.artsimMap.screenOf(row)", far[0])
    page.mouse.move(x, y)
    expect(page.locator("#tip b")).to_have_text(EVIL)
    expect(page.locator("#tip")).to_contain_text("Vilhelm Hammershøi")
    # click: details and nearest works (the other far works: they share its direction)
    x, y = page.evaluate("(row) => window.artsimMap.screenOf(row)", target)
    page.mouse.click(x, y)
    detail = page.locator("#detail")
    expect(detail.locator("h2").first).to_have_text(f"Far work {target}")
    expect(detail).to_contain_text(f"met:{target}")
    expect(detail.locator("img.thumb")).to_have_attribute("src", f"/map/thumb/{target}{version}")
    items = detail.locator("ol li")
    expect(items.first).to_be_visible()
    listed = items.evaluate_all("els => els.map(e => e.firstChild.textContent)")
    assert len(listed) == 8 and {t for t in listed[:FAR - 1]} == {EVIL} | {f"Far work {r}" for r in far[2:]}
    assert f"/map/api/point/{target}{version}" in requests
    _shot(page, tmp_path / "chunked-map-selected.png")
    # following a listed neighbour selects it
    items.nth(1).click()
    expect(detail.locator("h2").first).not_to_have_text(f"Far work {target}")
    assert page.locator("#detail b, #tip img").count() == 0  # markup in a title made no element
    assert tab.errors == [] and tab.dialogs == []
    assert page.evaluate("() => window.artsimMap.error") is None


def test_map_routes_refuse_paths_and_rows_they_do_not_know(map_server, map_home):
    import json

    def get(path):
        return _get(map_server + path)

    status, headers, body = get("/map")
    assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
    status, _, body = get("/map/data/manifest.json")
    assert status == 200 and json.loads(body)["n"] == map_home[1]["n"]
    for bad in ("/map/data/chunks/..%2F..%2Fstorage", "/map/data/details-x.parquet", "/map/data/chunks/0.bin",
                "/map/api/point/999999", "/map/api/point/-1", "/map/thumb/0", "/map/thumb/abc"):
        assert get(bad)[0] in (404, 422), bad


def test_rows_are_answered_only_for_the_map_version_the_viewer_read(map_server, map_home):
    """A row is a position in one version of the map's details: a viewer names that version, a
    rebuilt map answers 409 instead of another work, and only versioned thumbnails are cached for good."""
    import json

    def get(path):
        return _get(map_server + path)

    _, _, body = get("/map/data/manifest.json")
    version = json.loads(body)["details"]
    far_row = map_home[2][0]
    status, _, body = get(f"/map/api/point/0?map={version}")
    assert status == 200 and json.loads(body)["artwork_id"]
    assert get("/map/api/point/0?map=details-000000000000000000000000.parquet")[0] == 409
    assert get(f"/map/thumb/{far_row}?map=details-000000000000000000000000.parquet")[0] == 409
    status, headers, _ = get(f"/map/thumb/{far_row}?map={version}")
    assert status == 200 and "immutable" in headers["Cache-Control"]
    status, headers, _ = get(f"/map/thumb/{far_row}")
    assert status == 200 and "immutable" not in headers["Cache-Control"]
