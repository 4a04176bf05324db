"""The `search_index` asset through Dagster: built over artworks, text and (with a CLIP backbone)
image vectors; updated incrementally; the fusion config stored with it; the image part dropped
when the backbone has no text tower."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
from dagster import AssetKey, materialize

from artsim_pipeline.core import text_search as ts
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.encoders import EncoderResource
from artsim_pipeline_tests.conftest import save_tiny_vit
from artsim_pipeline_tests.search_home import build_search_home, save_tiny_clip


def latest(result, key="search_index") -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.materialization.asset_key == AssetKey(key)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def info(home) -> dict:
    return json.loads((home / "indexes" / "search_index" / artefacts.SEARCH_INFO_FILE).read_text())


def test_search_index_builds_updates_and_follows_the_backbone(artsim_home, tmp_path):
    from artsim_pipeline.core.ml.text import TEXT_MODEL_ID, artwork_text
    from artsim_pipeline.resources.models import embed_texts
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.service import SimilarityService
    from artsim_pipeline_tests.search_home import search_works

    clip = save_tiny_clip(tmp_path / "clip")
    built = build_search_home(artsim_home, clip, search_config={})
    first = built["result"]
    meta = latest(first)
    assert all(c.passed for c in first.get_asset_check_evaluations())
    assert meta["works"] == meta["with_text_vector"] == meta["with_image_vector"] == 15
    assert meta["rankings"] == "keyword, text, image" and meta["text_recall_at_10"] >= 0.98
    assert info(artsim_home)["parts"] == ["keyword", "text", "image"] and info(artsim_home)["backbone_spec"] == f"hf:{clip}"

    defs = build_defs("sample")
    tables = defs.resources["tables"]
    table = tables.read_table("search_index")
    assert table.height == 15 and table["text_vector"].all() and table["image_vector"].all()

    # a work withdrawn, a work added: the vector indexes are updated in place, not rebuilt
    gone, new = "smk:KMS22", dict(search_works()[0], artwork_id="met:17", source_id="17", title="Hippopotamus figurine",
                                  artists=[], classification="Faience", tags=["Hippopotamus"], image_sha256=None)
    for source in ("met", "smk"):
        frame = tables.read_table("artworks", source).filter(pl.col("artwork_id") != gone)
        if source == "met":
            frame = pl.concat([frame, pl.DataFrame([new], schema=frame.schema)], how="vertical")
        tables.write_table(frame, "artworks", source)
    texts = tables.read_table("text_embeddings")
    vector = embed_texts([artwork_text(new)])[0]
    tables.write_table(pl.concat([texts, pl.DataFrame({"artwork_id": ["met:17"], "text_sha256": ["y"], "model_id": [TEXT_MODEL_ID]}).with_columns(
        pl.Series("vector", [vector], dtype=pl.List(pl.Float32)))]), "text_embeddings")
    resources = {**defs.resources, "encoder": EncoderResource(backbone=f"hf:{clip}")}
    config = {"ops": {"search_index": {"config": {"image_weight": 0.5, "rrf_k": 30}}}}
    second = materialize(list(defs.assets), selection=[AssetKey("search_index")], resources=resources, run_config=config)
    assert second.success
    updates = latest(second)["updates"]
    assert updates["text"]["rebuilt"] is False and (updates["text"]["added"], updates["text"]["deleted"]) == (1, 1)
    assert updates["image"]["rebuilt"] is False and updates["image"]["deleted"] == 1  # the new work has no image
    assert info(artsim_home)["fusion"]["image_weight"] == 0.5 and info(artsim_home)["fusion"]["rrf_k"] == 30
    service = SimilarityService(artsim_home)
    assert service.text_search.config.image_weight == 0.5
    assert service.search("hippopotamus", 1)[0]["artwork_id"] == "met:17"
    assert all(r["artwork_id"] != gone for r in service.search("study of clouds", 15))

    # a vision-only backbone: no text tower, so no image ranking (and no stale image part read)
    vit = EncoderResource(backbone=f"hf:{save_tiny_vit(tmp_path / 'vit')}")
    third = materialize(list(defs.assets), selection=[AssetKey("search_index")], resources={**defs.resources, "encoder": vit})
    assert third.success and latest(third)["rankings"] == "keyword, text"
    assert info(artsim_home)["parts"] == ["keyword", "text"] and not (artsim_home / "indexes" / "search_index" / "image").exists()
    assert not tables.read_table("search_index")["image_vector"].any()
    assert SimilarityService(artsim_home).text_search.rankers == ["keyword", "text"]
    assert np.isclose(SimilarityService(artsim_home).search("Irises", 1)[0]["score"], 1.0)
