"""The curator-facing pages in a real headless Chromium (driven by Playwright).

- the collection map (``render_map_html``) loaded from a file: hover shows title and maker,
  click lists the nearest works, the colour switch changes the legend;
- ``artsim serve`` started as a subprocess on a free loopback port over the tiny home of
  ``test_app.py``: search, open a work, see (and follow) its nearest works; the feedback page:
  pick a candidate, submit, and the judgment is stored;
- a title holding ``<script>alert(1)</script>`` shows as text and opens no dialog.

Needs ``/usr/bin/chromium`` (``scripts/install-browser.sh`` installs it; ``make test`` runs
that script first) and the ``playwright`` Python package from the test extras. Playwright's own
browser downloads are never used. Missing either is a failure, not a skip.
"""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core import feedback as fb
from artsim_pipeline.resources import artefacts as store
from artsim_pipeline.core.collection_map import render_map_html
from artsim_pipeline_tests.servers import CHROMIUM, CHROMIUM_ARGS, artsim_serve
from artsim_pipeline_tests.web.test_app import EVIL, _works, home  # noqa: F401 - `home` is the tiny-home fixture

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the `browser` fixture as a failure
    expect = sync_playwright = None

# how long an action or a wait may take, and how long an `expect` retries (Playwright's own default
# is 5 s): Chromium, the server and the tests share a machine that may be busy. A wait ends as soon
# as its condition holds, so only a failure takes this long.
TIMEOUT_MS = 30_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        pytest.fail("the playwright package is missing: install the test extras (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/install-browser.sh (make test runs it first)")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A fresh browser page that records dialogs and script errors (a dialog is dismissed)."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser):
    t = Page(browser)
    yield t
    t.close()


@pytest.fixture(scope="module")
def server(home, tmp_path_factory):  # noqa: F811
    """`artsim serve --port N` over ``home`` in a subprocess; yields its base URL."""
    with artsim_serve(home, tmp_path_factory.mktemp("serve")) as base:
        yield base


def _png_data_uri(rgb: tuple[int, int, int]) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 12), rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def map_file(tmp_path_factory):
    """The collection map of the tiny home's works (on a grid, so points never overlap), with
    each work's 3 nearest works (by cosine over made-up vectors) and a thumbnail per work."""
    rows = _works()
    ids = [r["artwork_id"] for r in rows]
    points = pl.DataFrame({
        "artwork_id": ids,
        "x": [float(i % 4) for i in range(len(ids))],
        "y": [float(i // 4) for i in range(len(ids))],
        "title": [r["title"] for r in rows],
        "artists": [r["artists"] for r in rows],
        "source": [r["source"] for r in rows],
        "date_text": [r["date_text"] for r in rows],
        "cluster": [i % 3 for i in range(len(ids))],
    })
    vecs = np.random.default_rng(1).normal(size=(len(ids), 8))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = {a: [ids[j] for j in np.argsort(-sims[i])[:3]] for i, a in enumerate(ids)}
    thumbs = {a: _png_data_uri((40 + 15 * i, 90, 200 - 10 * i)) for i, a in enumerate(ids)}
    path = tmp_path_factory.mktemp("map") / "map.html"
    path.write_text(render_map_html(points, neighbours, thumbs, method="pca"), encoding="utf-8")
    return path, rows, neighbours


def _shot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000, path


# where a work's point is on the page, by the page's own fit-to-canvas rule
_POINT_JS = """(id) => {
  const D = JSON.parse(document.getElementById("artsim-data").textContent);
  const j = D.ids.indexOf(id);
  const r = document.getElementById("map").getBoundingClientRect();
  const W = Math.max(50, r.width), H = Math.max(50, r.height), pad = 24;
  const minX = Math.min(...D.x), maxX = Math.max(...D.x), minY = Math.min(...D.y), maxY = Math.max(...D.y);
  const s = Math.min((W - 2 * pad) / ((maxX - minX) || 1), (H - 2 * pad) / ((maxY - minY) || 1));
  const tx = (W - s * (minX + maxX)) / 2, ty = (H + s * (minY + maxY)) / 2;
  return [r.left + tx + s * D.x[j], r.top + ty - s * D.y[j]];
}"""

_INKED_PIXELS_JS = """() => {
  const c = document.getElementById("map");
  const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < px.length; i += 4) if (px[i]) n++;
  return n;
}"""


# -- the collection map --------------------------------------------------------------------------


def test_map_hover_click_and_colour_switch(tab, map_file, tmp_path):
    path, rows, neighbours = map_file
    title = {r["artwork_id"]: r["title"] for r in rows}
    page = tab.page
    page.goto(path.as_uri())
    expect(page.locator("#bar .sub")).to_have_text(f"{len(rows)} works · projection: pca")
    page.wait_for_function("() => { const c = document.getElementById('map'); return c.width > 0; }")
    assert page.evaluate(_INKED_PIXELS_JS) > 0, "the canvas drew nothing"
    _shot(page, tmp_path / "map.png")

    # hover: title and maker in the tooltip
    x, y = page.evaluate(_POINT_JS, "smk:KMS1")
    page.mouse.move(x, y)
    tip = page.locator("#tip")
    expect(tip).to_be_visible()
    expect(tip.locator("b")).to_have_text("Interiør, Strandgade 30")
    expect(tip).to_contain_text("Vilhelm Hammershøi")

    # click: the nearest works listed, best first
    page.mouse.click(x, y)
    detail = page.locator("#detail")
    expect(detail.locator("h2").first).to_have_text("Interiør, Strandgade 30")
    items = detail.locator("ol li")
    expect(items).to_have_count(3)
    for i, nb in enumerate(neighbours["smk:KMS1"]):
        expect(items.nth(i)).to_contain_text(title[nb] or "(untitled)")
    _shot(page, tmp_path / "map-selected.png")

    # following a listed neighbour selects it
    first_nb = neighbours["smk:KMS1"][0]
    items.first.click()
    expect(detail.locator("h2").first).to_have_text(title[first_nb])
    expect(detail).to_contain_text(first_nb)

    # colour switch: the legend follows
    legend = page.locator("#legend")
    expect(legend).to_contain_text("met")
    page.select_option("#colour", "cluster")
    expect(legend).to_contain_text("cluster 0")
    expect(legend).not_to_contain_text("smk")
    assert tab.errors == [] and tab.dialogs == []


def test_map_shows_markup_in_titles_as_text(tab, map_file, tmp_path):
    path, _, _ = map_file
    page = tab.page
    page.goto(path.as_uri())
    page.wait_for_function("() => document.getElementById('map').width > 0")
    x, y = page.evaluate(_POINT_JS, "met:3")
    page.mouse.move(x, y)
    expect(page.locator("#tip b")).to_have_text(EVIL)
    expect(page.locator("#tip")).to_contain_text("<b>Evil</b> & Co")
    page.mouse.click(x, y)
    expect(page.locator("#detail h2").first).to_have_text(EVIL)
    assert page.locator("script").count() == 2  # the data block and the page's own script
    assert page.locator("#tip b b, #detail b").count() == 0  # "<b>Evil</b>" made no element
    _shot(page, tmp_path / "map-evil.png")
    assert tab.dialogs == [] and tab.errors == []
    page.evaluate("() => alert('probe')")  # the dialog recorder would have seen alert(1)
    assert tab.dialogs == ["probe"]


# -- artsim serve ----------------------------------------------------------------------------------


def test_search_open_work_and_follow_neighbours(tab, server, tmp_path):
    page = tab.page
    page.goto(server + "/")
    expect(page.locator("h1")).to_have_text("Find a work")
    page.fill("input[name=q]", "cypress")
    page.click("button[type=submit]")
    page.wait_for_url("**/?q=cypress*")
    results = page.locator(".card a")
    expect(results.first).to_be_visible()
    assert set(results.evaluate_all("els => els.slice(0, 2).map(e => e.textContent)")) == {
        "Wheat Field with Cypresses", "Landskab med cypresser"}  # the two cypress works first (ranked search)
    _shot(page, tmp_path / "search.png")

    page.get_by_role("link", name="Wheat Field with Cypresses").click()
    page.wait_for_url("**/work/met:1")
    expect(page.locator("h1")).to_have_text("Wheat Field with Cypresses")
    met = page.locator("h2:text-is('Most similar at met') + .grid .card")
    smk = page.locator("h2:text-is('Most similar at smk') + .grid .card")
    expect(met.first.locator("a")).to_have_text("Irises")
    expect(met.first.locator(".score")).to_have_text(re.compile(r"^0\.\d{3}$"))
    expect(smk.first.locator("a")).to_have_text("Landskab med cypresser")
    expect(smk.first.locator(".why")).to_contain_text("same maker: Vincent van Gogh")
    _shot(page, tmp_path / "work.png")

    # a neighbour's own page lists the first work among its nearest
    met.first.locator("a").click()
    page.wait_for_url("**/work/met:2")
    expect(page.locator("h1")).to_have_text("Irises")
    expect(page.locator("h2:text-is('Most similar at met') + .grid .card a").first).to_have_text(
        "Wheat Field with Cypresses"
    )
    assert tab.dialogs == []


def test_feedback_pick_submit_and_stored(tab, server, home, tmp_path):  # noqa: F811
    page = tab.page
    page.goto(server + "/feedback?anchor=met:1")
    expect(page.locator("h1")).to_have_text("Which work is most like this one?")
    radios = page.locator("input[type=radio][name=chosen_id]")
    expect(radios).to_have_count(fb.N_CANDIDATES)
    candidates = page.locator("input[type=hidden][name=candidate_ids]").evaluate_all("els => els.map(e => e.value)")
    assert len(candidates) == fb.N_CANDIDATES and "met:2" in candidates and "met:1" not in candidates

    page.locator("label.pick", has_text="Irises").locator("input[type=radio]").check()
    page.fill("input[name=curator]", "Browser Ída")
    _shot(page, tmp_path / "feedback.png")
    page.get_by_role("button", name="Save judgment").click()
    page.wait_for_url("**/feedback?*saved=1*")
    expect(page.locator(".notice")).to_contain_text("your judgment was saved")
    expect(page.locator("input[name=curator]")).to_have_value("Browser Ída")
    _shot(page, tmp_path / "feedback-saved.png")

    saved = store.load_judgments(home).filter(pl.col("curator") == "Browser Ída")
    assert saved.height == 1
    row = saved.row(0, named=True)
    assert row["anchor_id"] == "met:1" and row["chosen_id"] == "met:2"
    assert row["candidate_ids"] == candidates
    assert tab.dialogs == []


def test_app_shows_markup_in_titles_as_text(tab, server, tmp_path):
    page = tab.page
    page.goto(server + "/?q=alert")
    link = page.locator(".card a")
    expect(link).to_have_count(1)
    expect(link).to_have_text(EVIL)
    link.click()
    page.wait_for_url("**/work/met:3")
    expect(page.locator("h1")).to_have_text(EVIL)
    expect(page.locator("table.meta")).to_contain_text("<b>Evil</b> & Co")
    assert page.title() == f"{EVIL} · artsim"
    assert page.locator("script").count() == 0 and page.locator("h1 script, td b").count() == 0
    _shot(page, tmp_path / "work-evil.png")
    # an id holding markup is refused, and nothing runs either
    page.goto(server + "/work/met:%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    expect(page.locator("h1")).to_have_text("Not found")
    assert tab.dialogs == []
    page.evaluate("() => alert('probe')")  # the dialog recorder would have seen alert(1)
    assert tab.dialogs == ["probe"]
