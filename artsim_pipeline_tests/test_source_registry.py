"""One source registry (core/sources.py): every API source has what the pipeline needs, and every
list of museums (partitions, CLI, replay server, sample, pages, map) is read from it."""

from __future__ import annotations

import importlib

import pytest

from artsim_pipeline.core.sources import API_SOURCES, REGISTRY, SOURCES, source_spec


@pytest.mark.parametrize("source", API_SOURCES)
def test_an_api_source_is_one_entry_with_everything_the_pipeline_needs(source):
    from artsim_pipeline.resources.clients.registry import client_class
    from artsim_pipeline.resources.clients.snapshot import SnapshotClient

    spec = source_spec(source)
    assert spec.api_root.startswith("https://") and spec.label and spec.licence
    assert spec.requests_per_second > 0 and spec.burst >= 1
    module, _, name = spec.normaliser.partition(":")
    assert callable(getattr(importlib.import_module(module), name))
    cls = client_class(source)
    assert cls.source == source
    snapshot = SnapshotClient.from_bundled_sample(source)  # the sample holds every API source
    listing = snapshot.list_ids()
    assert listing.ids and all(r.status == "ok" for r in snapshot.fetch_objects(listing.ids[:3]))


def test_contract_keys_roots_and_id_patterns():
    assert SOURCES == ("met", "smk", "cma", "aic", "met_medialab")
    assert source_spec("cma").api_root == "https://openaccess-api.clevelandart.org/api"
    assert source_spec("aic").api_root == "https://api.artic.edu/api/v1"
    assert [spec.key for spec in REGISTRY if spec.incremental] == ["met"]
    assert source_spec("aic").field_licences[0][0] == "description" and "CC BY 4.0" in source_spec("aic").field_licences[0][1]
    import re

    assert re.match(source_spec("cma").artwork_id_pattern, "cma:93014") and re.match(source_spec("aic").artwork_id_pattern, "aic:209980")


def test_api_roots_come_from_the_environment_through_settings(monkeypatch, artsim_home):
    from artsim_pipeline import settings
    from artsim_pipeline.definitions import build_resources

    assert settings.api_base_url("cma") == "https://openaccess-api.clevelandart.org/api"
    monkeypatch.setenv("ARTSIM_CMA_BASE_URL", "http://127.0.0.1:9/cma/")
    monkeypatch.setenv("ARTSIM_AIC_BASE_URL", "http://127.0.0.1:9/aic")
    monkeypatch.setenv("ARTSIM_MET_BASE_URL", "http://127.0.0.1:9/met")
    api = build_resources("local")["museum_api"]
    assert [api.base_url(s) for s in ("met", "cma", "aic")] == ["http://127.0.0.1:9/met", "http://127.0.0.1:9/cma",
                                                                 "http://127.0.0.1:9/aic"]
    assert api.base_url("smk") == "https://api.smk.dk/api/v1"
    with pytest.raises(ValueError):
        settings.api_base_url("met_medialab")


def test_partitions_cli_and_schedules_list_every_source(capsys):
    from dagster import build_schedule_context

    from artsim_pipeline.cli import main
    from artsim_pipeline.defs.operations.automation import nightly_ingest
    from artsim_pipeline.defs.partitions import source_partitions

    assert source_partitions.get_partition_keys() == list(SOURCES)
    with pytest.raises(SystemExit):
        main(["search", "cats", "--source", "louvre"])
    err = capsys.readouterr().err
    assert all(f"'{source}'" in err for source in SOURCES)
    requests = list(nightly_ingest(build_schedule_context(scheduled_execution_time=__import__("datetime").datetime(2026, 1, 1))))
    assert [r.partition_key for r in requests] == list(SOURCES)


def test_the_map_legend_names_and_colours_every_museum():
    import polars as pl

    from artsim_pipeline.core.collection_map import map_data, render_map_html

    sources = ["aic", "met", "cma", "smk", "met_medialab", "louvre"]
    points = pl.DataFrame({"artwork_id": [f"{s}:{i}" for i, s in enumerate(sources)], "x": [0.0, 1, 2, 3, 4, 5],
                           "y": [0.0, 1, 0, 1, 0, 1], "source": sources})
    museum = map_data(points)["colourBy"]["museum"]
    # registry order (a museum keeps its colour from map to map), labels from the registry, unknown keys last
    assert museum["names"] == ["The Met (met)", "SMK (smk)", "Cleveland (cma)", "Art Institute of Chicago (aic)",
                               "Met MediaLab (export) (met_medialab)", "louvre"]
    assert museum["codes"] == [3, 0, 2, 1, 4, 5]
    assert 'all=(name==="museum")' in render_map_html(points)  # past the palette every museum still gets a hue
