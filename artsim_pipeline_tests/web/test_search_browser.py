"""Search in a real headless Chromium against `artsim serve` (a subprocess on a loopback port)
over the search test home: words ranked by meaning, the filters of the search page and of a
work's similar-works page, and "search by image" with an uploaded file (and a refused one).

Needs ``/usr/bin/chromium`` (``scripts/install-browser.sh``) and the ``playwright`` package;
missing either is a failure, not a skip (the fixtures of ``test_browser.py``)."""

from __future__ import annotations

import re

import pytest

from artsim_pipeline.resources.museum_api import SOURCES
from artsim_pipeline_tests.search_home import EVIL, build_search_home, save_tiny_clip
from artsim_pipeline_tests.servers import artsim_serve
from artsim_pipeline_tests.web.test_browser import _shot, browser, tab  # noqa: F401 - fixtures

try:
    from playwright.sync_api import expect
except ImportError:  # reported by the `browser` fixture as a failure
    expect = None


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("search_browser")
    facts = build_search_home(root / "home", save_tiny_clip(root / "clip"))
    return root / "home", facts


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    with artsim_serve(built[0], tmp_path_factory.mktemp("serve")) as base:
        yield base


def titles(page) -> list[str]:
    return page.locator(".results .card > a").evaluate_all("els => els.map(e => e.textContent)")


def test_search_by_meaning_with_filters(tab, server, tmp_path):  # noqa: F811
    page = tab.page
    page.goto(server + "/")
    page.fill("input[name=q]", "mother holding her infant")
    page.locator("form[action='/'] button[type=submit]").click()
    page.wait_for_url(re.compile(r".*\?q=mother\+holding\+her\+infant.*"))
    expect(page.locator(".results .card").first).to_be_visible()
    assert set(titles(page)[:2]) == {"The Virgin and Child", "Madonna med barnet"}  # no work says "mother" or "infant"
    expect(page.locator(".results .card").first.locator(".why")).to_contain_text("meaning #")
    _shot(page, tmp_path / "search.png")

    # museum and kind of work: the filters stay filled in on the result page
    form = page.locator("form[action='/']")
    form.locator("select[name=source]").select_option("smk")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*source=smk.*"))
    assert titles(page)[0] == "Madonna med barnet" and "The Virgin and Child" not in titles(page)
    expect(form.locator("select[name=source]")).to_have_value("smk")
    form.locator("select[name=source]").select_option("")
    form.locator("input[name=type]").fill("paintings")
    form.locator("input[name=from]").fill("1495")
    form.locator("input[name=to]").fill("1600")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*type=paintings.*"))
    assert titles(page) == ["The Virgin and Child"]
    expect(form.locator("input[name=type]")).to_have_value("paintings")

    # a filter no work passes says so
    form.locator("input[name=from]").fill("1700")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*from=1700.*"))
    expect(page.locator(".error")).to_contain_text("'from' is after 'to'")
    assert tab.dialogs == [] and tab.errors == []


def test_exact_number_and_markup_in_results(tab, server):  # noqa: F811
    page = tab.page
    page.goto(server + "/?q=KKSgb6775%2F3")
    expect(page.locator(".results .card > a").first).to_have_text("Landskab med cypresser")
    expect(page.locator(".results .card").first.locator(".why")).to_contain_text("exact id or title")
    page.goto(server + "/?q=alert")
    expect(page.locator(".results .card > a").first).to_have_text(EVIL)
    assert page.locator("script").count() == 0 and tab.dialogs == []


def test_similar_works_page_filters(tab, server, tmp_path):  # noqa: F811
    page = tab.page
    page.goto(server + "/work/met:1")
    expect(page.locator("h2")).to_have_count(len(SOURCES))  # one section per museum
    form = page.locator("form.similar-filters")
    form.locator("select[name=source]").select_option("smk")
    form.locator("input[name=type]").fill("maleri")
    form.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*/work/met:1\?.*source=smk.*"))
    expect(page.locator("h2")).to_have_count(1)
    expect(page.locator("h2")).to_have_text("Most similar at smk")
    cards = page.locator("h2 + .grid .card > a")
    assert set(cards.evaluate_all("els => els.map(e => e.textContent)")) <= {"Interiør, Strandgade 30", "Løve", "Madonna med barnet"}
    expect(cards.first).to_be_visible()
    _shot(page, tmp_path / "work-filtered.png")
    page.get_by_role("link", name="clear filters").click()
    page.wait_for_url("**/work/met:1")
    expect(page.locator("h2")).to_have_count(len(SOURCES))


def test_search_by_uploaded_image(tab, server, built, tmp_path):  # noqa: F811
    _, facts = built
    query = tmp_path / "lion.png"
    query.write_bytes(facts["images"]["met:10"])
    page = tab.page
    page.goto(server + "/")
    page.locator("details.by-image summary").click()
    image_form = page.locator("form[action='/search/image']")
    image_form.locator("input[type=file]").set_input_files(str(query))
    image_form.get_by_role("button", name="Search by image").click()
    page.wait_for_url("**/search/image")
    expect(page.locator(".results .card > a").first).to_have_text("Lion Attacking a Horse")
    expect(page.locator(".results .card .score").first).to_have_text("1.000")
    _shot(page, tmp_path / "by-image.png")

    # with a museum filter, then a file that is not an image
    image_form = page.locator("form[action='/search/image']")
    image_form.locator("input[type=file]").set_input_files(str(query))
    image_form.locator("select[name=source]").select_option("smk")
    image_form.get_by_role("button", name="Search by image").click()
    page.wait_for_load_state()
    expect(page.locator(".results .card").first).to_be_visible()
    assert "Lion Attacking a Horse" not in titles(page) and all(
        t in {w["title"] for w in _smk_works()} for t in titles(page))
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"these are notes, not a picture")
    image_form = page.locator("form[action='/search/image']")
    image_form.locator("input[type=file]").set_input_files(str(notes))
    image_form.get_by_role("button", name="Search by image").click()
    page.wait_for_load_state()
    expect(page.locator(".error")).to_contain_text("not an image this app can read")
    assert tab.dialogs == [] and tab.errors == []


def _smk_works() -> list[dict]:
    from artsim_pipeline_tests.search_home import search_works

    return [w for w in search_works() if w["source"] == "smk"]
