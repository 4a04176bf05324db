"""Shared test fixtures: an isolated ARTSIM_HOME, no telemetry, and the replay server."""

from __future__ import annotations

import os

import pytest

# Set before anything imports dagster / mlflow / great_expectations.
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def artsim_home(tmp_path, monkeypatch):
    """A fresh ARTSIM_HOME for one test, with the sample environment."""
    home = tmp_path / "artsim_home"
    home.mkdir()
    monkeypatch.setenv("ARTSIM_HOME", str(home))
    monkeypatch.setenv("ARTSIM_ENV", "sample")
    return home


@pytest.fixture(scope="session")
def shared_met_records():
    from artsim_pipeline_tests.replay.server import load_shared_met_records

    return load_shared_met_records()


@pytest.fixture(scope="session")
def shared_smk_records():
    from artsim_pipeline_tests.replay.server import load_shared_smk_records

    return load_shared_smk_records()


@pytest.fixture
def replay(shared_met_records, shared_smk_records):
    """A replay server over 120 real Met records (with the 4 exact ones) and every SMK item."""
    from artsim_pipeline_tests.replay.server import ReplayServer

    exact_ids = {53426, 436535, 437980, 915129}
    met = [r for r in shared_met_records if r["objectID"] in exact_ids]
    met += [r for r in shared_met_records if r["objectID"] not in exact_ids][:116]
    with ReplayServer(met_records=met, smk_records=shared_smk_records) as server:
        yield server
