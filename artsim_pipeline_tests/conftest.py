"""Shared test fixtures: an isolated ARTSIM_HOME, no telemetry, and the replay server."""

from __future__ import annotations

import os

import pytest

# helpers that assert, shared by several test modules: their failures keep pytest's messages
pytest.register_assert_rewrite("artsim_pipeline_tests.core.normalise_records")

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


@pytest.fixture(scope="session")
def shared_paged_records():
    """The real records of the paged API sources (`cma`, `aic`), by registry key."""
    from artsim_pipeline_tests.replay.paged import PAGED_APIS

    return {key: load() for key, (_, _, _, load) in PAGED_APIS.items()}


@pytest.fixture
def replay(shared_met_records, shared_smk_records, shared_paged_records):
    """A replay server over 120 real Met records (with the 4 exact ones), every SMK item and every
    record of the other API sources of the registry (76 Cleveland, 21 AIC)."""
    from artsim_pipeline_tests.replay.server import ReplayServer

    exact_ids = {53426, 436535, 437980, 915129}
    met = [r for r in shared_met_records if r["objectID"] in exact_ids]
    met += [r for r in shared_met_records if r["objectID"] not in exact_ids][:116]
    with ReplayServer(met_records=met, smk_records=shared_smk_records, records=shared_paged_records) as server:
        yield server


def save_tiny_vit(path, hidden_size: int = 32, seed: int = 0):
    """A tiny ViT saved the way a hub model is, so it loads through `from_pretrained(path)`."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=hidden_size, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8)
    ViTModel(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory):
    return save_tiny_vit(tmp_path_factory.mktemp("tiny_vit"))


@pytest.fixture(scope="session")
def sample_artworks():
    """The bundled sample normalised (both sources), as the `artworks` asset would hold it."""
    import polars as pl

    from artsim_pipeline.core.normalise import normalise
    from artsim_pipeline.core.raw_store import merge_results
    from artsim_pipeline.resources.clients.snapshot import SnapshotClient

    frames = []
    for source in ("met", "smk"):
        client = SnapshotClient.from_bundled_sample(source)
        raw, _ = merge_results(None, client.fetch_objects(client.list_ids().ids))
        frames.append(normalise(source, raw)[0])
    return pl.concat(frames, how="diagonal_relaxed")


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory):
    """A tiny BERT with the real MiniLM tokenizer, saved like a hub model (fast to run)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from artsim_pipeline.resources.models import text_model_path

    path = tmp_path_factory.mktemp("tiny_text")
    tokenizer = AutoTokenizer.from_pretrained(str(text_model_path()))
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=512)).save_pretrained(path)
    return path
