"""`artsim search TEXT [-k N] [--source S] [--type T] [--from Y] [--to Y] [--json]` over a tiny
built home: ranked JSON with the contract keys, filters, and exit code 2 for what cannot be asked."""

from __future__ import annotations

import json

import pytest

from artsim_pipeline.cli import main
from artsim_pipeline_tests.search_home import build_search_home, save_tiny_clip

KEYS = ["artwork_id", "score", "title", "artists", "source", "classification", "landing_url"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_search")
    build_search_home(root / "home", save_tiny_clip(root / "clip"))
    return root / "home"


@pytest.fixture
def env(home, monkeypatch):
    monkeypatch.setenv("ARTSIM_HOME", str(home))
    monkeypatch.setenv("ARTSIM_ENV", "sample")
    return home


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["search", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_lists_works_ranked_by_meaning(env, capsys):
    code, out, _ = run(capsys, "mother", "holding", "her", "infant", "-k", "2", "--json")
    assert code == 0
    results = json.loads(out)
    assert [list(r) for r in results] == [KEYS, KEYS]
    assert {r["artwork_id"] for r in results} == {"met:13", "smk:KMS21"}  # neither says "mother" or "infant"
    assert results[0]["score"] >= results[1]["score"]
    by_number = json.loads(run(capsys, "KKSgb6775/3", "--json")[1])
    assert by_number[0]["artwork_id"] == "smk:KKSgb6775/3" and by_number[0]["classification"] == "tegning"


def test_filters(env, capsys):
    smk = json.loads(run(capsys, "feline", "--source", "smk", "--json")[1])
    assert smk and {r["source"] for r in smk} == {"smk"} and smk[0]["artwork_id"] == "smk:KMS20"
    kind = json.loads(run(capsys, "feline", "--type", "DRAWINGS", "--json")[1])
    assert {r["artwork_id"] for r in kind} <= {"met:11", "met:16"} and kind
    dated = json.loads(run(capsys, "vase", "--from", "-600", "--to", "-500", "--json")[1])
    assert [r["artwork_id"] for r in dated] == ["met:3"]
    code, out, _ = run(capsys, "feline", "-k", "3")
    assert code == 0 and out.startswith("works matching 'feline':") and "Sleeping Cat" in out and "meaning" not in out


@pytest.mark.parametrize("argv, message", [
    ([], "empty"),
    (["   "], "empty"),
    (["cats", "--type", "Photographs"], "no works of kind 'Photographs'"),
    (["cats", "--from", "1900", "--to", "1800"], "'from' is after 'to'"),
    (["cats", "--from", "nineteenth"], "must be a year"),
    (["cats", "--source", "smk", "--type", "Paintings"], "no work matches these filters"),
    (["cats", "-k", "0"], "at least 1"),
])
def test_what_cannot_be_asked_exits_2(env, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and message in err


def test_not_built_exits_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARTSIM_HOME", str(tmp_path))
    (tmp_path / "storage").mkdir()
    code, _, err = run(capsys, "feline")
    assert code == 3 and "make run" in err
