"""The `search_index` asset through Dagster: built over artworks, text and (with a CLIP backbone)
image vectors; updated incrementally; the fusion config stored with it; the image part dropped
when the backbone has no text tower."""

from __future__ import annotations

import hashlib
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


def _text_table(rows: list[dict]) -> pl.DataFrame:
    from artsim_pipeline.core.ml.text import TEXT_MODEL_ID, artwork_text
    from artsim_pipeline.resources.models import embed_texts

    texts = [artwork_text(r) for r in rows]
    return pl.DataFrame({"artwork_id": [r["artwork_id"] for r in rows], "text_sha256": [hashlib.sha256(t.encode()).hexdigest() for t in texts],
                         "model_id": [TEXT_MODEL_ID] * len(rows)}).with_columns(
        pl.Series("vector", list(embed_texts(texts)), dtype=pl.List(pl.Float32)))


def test_a_retitled_work_is_tokenised_alone_and_the_recall_check_measures_only_a_changed_index(artsim_home):
    """Second run, nothing changed: no work tokenised, the text part not written again, the recall
    figure carried over. Third run, a work retitled (its text vector with it): that work alone is
    tokenised, the index answers as a fresh build would, and recall is measured again."""
    from artsim_pipeline.core import keyword_index as kw
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.service import SimilarityService
    from artsim_pipeline_tests.search_home import search_works

    rows = search_works()
    defs = build_defs("sample")
    tables = defs.resources["tables"]
    schema = {"date_begin": pl.Int32, "date_end": pl.Int32, "object_type": pl.String, "medium": pl.String, "culture": pl.String,
              "department": pl.String}

    def store(rows):
        frame = pl.DataFrame(rows, schema_overrides=schema)
        for source in ("met", "smk"):
            tables.write_table(frame.filter(pl.col("source") == source), "artworks", source)
        tables.write_table(_text_table(rows), "text_embeddings")

    def run():
        result = materialize(list(defs.assets), selection=[AssetKey("search_index")], resources=defs.resources,
                             run_config={"ops": {"search_index": {"config": {"recall_sample": 15, "update_recall_sample": 6}}}})
        assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
        [check] = result.get_asset_check_evaluations()
        return latest(result), {k: v.value for k, v in check.metadata.items()}

    store(rows)
    first, check = run()
    assert (first["tokenised"], first["tokens_reused"], first["recall_queries"], first["recall_reused"]) == (15, 0, 15, False)
    assert check["queries"] == 15 and check["reused"] is False
    text_dir = artsim_home / "indexes" / "search_index" / ts.TEXT_DIR
    written = text_dir.stat().st_ino

    second, check = run()
    assert (second["tokenised"], second["tokens_reused"], second["recall_reused"]) == (0, 15, True)
    assert second["text_recall_at_10"] == first["text_recall_at_10"] and check["reused"] is True
    assert text_dir.stat().st_ino == written

    rows = [dict(r, title="Sunflowers in a Vase") if r["artwork_id"] == "met:2" else r for r in rows]
    store(rows)
    third, check = run()
    assert (third["tokenised"], third["tokens_reused"]) == (1, 14)
    assert (third["recall_queries"], third["recall_reused"], check["queries"]) == (6, False, 6)
    assert third["updates"]["text"]["updated"] == 1 and text_dir.stat().st_ino != written

    service = SimilarityService(artsim_home)
    assert [r["artwork_id"] for r in service.search("sunflowers", 3, only={"keyword"})] == ["met:2"]
    assert "met:2" not in [r["artwork_id"] for r in service.search("irises", 15, only={"keyword"})]
    stored = service.text_search.keyword
    fresh = kw.KeywordIndex.build(*zip(*kw.iter_documents(pl.DataFrame(rows, schema_overrides=schema).sort("artwork_id"))))
    assert stored.ids == fresh.ids and set(stored.vocab) == set(fresh.vocab)
    for token in fresh.vocab:
        if token:
            np.testing.assert_array_equal(stored.retriever.get_scores([token]), fresh.retriever.get_scores([token]))


def test_the_recall_check_reuses_a_figure_only_for_the_index_it_measured():
    """A stored figure is carried over only while the index is untouched and queried the same way:
    a failing figure keeps failing; a changed index or other settings are measured again."""
    from artsim_pipeline.core.ann import AnnConfig, build_index, synthetic_clustered_vectors
    from artsim_pipeline.defs.indexing.search_assets import SearchIndexConfig, text_recall

    vectors = synthetic_clustered_vectors(300, dim=16, n_clusters=10, seed=0)
    ids = [f"met:{i}" for i in range(300)]
    index = build_index(ids, vectors, AnnConfig(num_threads=1), model_run_id="m")
    config = SearchIndexConfig(recall_sample=300, update_recall_sample=40)
    built = text_recall(index, ids, vectors, {"added": 300, "rebuilt": True}, None, config, seed=1)
    assert (built["queries"], built["reused"]) == (300, False) and built["recall_at_10"] >= 0.98
    failing = dict(built, recall_at_10=0.5)
    untouched = {"added": 0, "deleted": 0, "updated": 0, "rebuilt": False}
    assert text_recall(index, ids, vectors, untouched, failing, config, seed=1) == dict(failing, reused=True)
    updated = text_recall(index, ids, vectors, dict(untouched, updated=3), failing, config, seed=1)
    assert (updated["queries"], updated["reused"]) == (40, False) and updated["recall_at_10"] >= 0.98
    other_ef = build_index(ids, vectors, AnnConfig(num_threads=1, ef=50), model_run_id="m")
    assert text_recall(other_ef, ids, vectors, untouched, failing, config, seed=1)["reused"] is False


def test_a_recall_figure_is_not_carried_over_to_a_text_part_written_by_a_run_that_stopped_before_its_info(tmp_path, monkeypatch):
    """Run 2 replaces the text part (a new model) and is killed writing the image part, before
    search_info.json: the stored figure was measured on run 1's text part, so it is not offered
    for reuse; a complete write keeps it for the part it was written with."""
    from artsim_pipeline.core import keyword_index as kw
    from artsim_pipeline.core.ann import AnnConfig, build_index, synthetic_clustered_vectors
    from artsim_pipeline.defs.indexing.search_assets import SearchIndexConfig, text_recall
    from artsim_pipeline.resources.artefacts import indexes
    from artsim_pipeline.resources.storage import ArtsimStorage

    storage, config = ArtsimStorage(home=str(tmp_path)), AnnConfig(num_threads=1)
    ids = [f"met:{i}" for i in range(300)]
    documents, tokens = kw.update_documents(pl.DataFrame({"artwork_id": ids, "title": ids}), None, None)
    keyword = kw.KeywordIndex.from_documents(documents, tokens["tokenizer"])
    first = synthetic_clustered_vectors(300, dim=16, n_clusters=10, seed=0)
    built = build_index(ids, first, config, model_run_id="model-1")
    measured = text_recall(built, ids, first, {"added": 300, "rebuilt": True}, None, SearchIndexConfig(recall_sample=50), seed=1)
    failing = dict(measured, recall_at_10=0.5)  # recognisable
    artefacts.save_search_index(storage, keyword, {ts.TEXT_DIR: built}, {"text_recall": failing})
    assert artefacts.stored_search_index(storage, config).info["text_recall"] == failing  # the part it measured

    stored = artefacts.stored_search_index(storage, config).vector_indexes[ts.TEXT_DIR]
    stored.update(ids, synthetic_clustered_vectors(300, dim=16, n_clusters=10, seed=7), "model-2")
    real_write = indexes.write_ann_index

    def killed_at_the_image_part(index, directory):
        if str(directory).endswith(ts.IMAGE_DIR):
            raise KeyboardInterrupt("killed")
        return real_write(index, directory)

    monkeypatch.setattr(indexes, "write_ann_index", killed_at_the_image_part)
    image = build_index(ids, first, config, model_run_id="img")
    try:
        artefacts.save_search_index(storage, keyword, {ts.TEXT_DIR: stored, ts.IMAGE_DIR: image}, {"text_recall": {"recall_at_10": 0.99}})
    except KeyboardInterrupt:
        pass
    after = artefacts.stored_search_index(storage, config)
    assert after.vector_indexes[ts.TEXT_DIR].build_info["model_run_id"] == "model-2"
    assert "text_recall" not in after.info  # measured again by the next run


def test_changed_build_parameters_rebuild_the_stored_text_index():
    """M or ef_construction changed in the asset's config: the stored vector index is built again
    with them (as ann_index does); the same parameters update it in place."""
    from artsim_pipeline.core.ann import AnnConfig, build_index, synthetic_clustered_vectors
    from artsim_pipeline.defs.indexing.search_assets import _vector_index

    vectors = synthetic_clustered_vectors(300, dim=16, n_clusters=10, seed=0)
    ids = [f"met:{i}" for i in range(300)]
    stored = build_index(ids, vectors, AnnConfig(num_threads=1), model_run_id="m")
    index, update = _vector_index({"text": stored}, "text", ids, vectors, "m", AnnConfig(num_threads=1))
    assert not update["rebuilt"] and update["unchanged"] == 300
    index, update = _vector_index({"text": stored}, "text", ids, vectors, "m", AnnConfig(M=8, ef_construction=50, num_threads=1))
    assert update["rebuilt"] and "build parameters" in update["reason"]
    assert (index.build_info["M"], index.build_info["ef_construction"], index.config.M) == (8, 50, 8)
    assert index.label_of("met:7") == 7 and len(index) == 300
