"""The whole graph on the bundled sample with tiny models: MLflow runs, the evaluation gate,
the index and its incremental path, and `artsim similar`."""

from __future__ import annotations

import json

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from artsim_pipeline.resources.encoders import EncoderResource

TRAINING = {"ops": {"similarity_model": {"config": {"max_epochs": 3, "patience": 2, "hidden_dim": 64, "out_dim": 32, "num_threads": 1}},
                    "department_classifier": {"config": {"epochs": 20}}, "period_classifier": {"config": {"epochs": 20}}}}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_vit, tiny_text_model):
    """Materialise everything once for this module (about a minute on 2 cores)."""
    import os

    from artsim_pipeline.cli import materialize_all

    home = tmp_path_factory.mktemp("e2e_home")
    saved = {k: os.environ.get(k) for k in ("ARTSIM_HOME", "ARTSIM_ENV", "MLFLOW_TRACKING_URI")}
    os.environ.update({"ARTSIM_HOME": str(home), "ARTSIM_ENV": "sample"})
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    encoder = EncoderResource(backbone=f"hf:{tiny_vit}", text_model_path=str(tiny_text_model), num_workers=0)
    instance = DagsterInstance.ephemeral()
    materialize_all(instance=instance, resources={"encoder": encoder}, run_config=TRAINING)
    yield home, encoder, instance
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def latest_metadata(instance, key):
    event = instance.get_latest_materialization_event(AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_every_asset_is_materialised_and_training_is_tracked_in_mlflow(pipeline):
    import mlflow

    from artsim_pipeline import settings
    from artsim_pipeline.definitions import build_defs

    home, _, instance = pipeline
    defs = build_defs("sample")
    assert isinstance(defs.load_asset_value("image_embeddings", partition_key="bucket0"), pl.DataFrame)
    for key in ("weak_pairs", "text_embeddings", "similarity_model", "similarity_evaluation",
                "artwork_vectors", "ann_index", "near_duplicates", "department_classifier", "period_classifier",
                "clusters", "collection_map", "search_index"):
        assert isinstance(defs.load_asset_value(key), pl.DataFrame), key
    from artsim_pipeline.service import SimilarityService

    # the search index follows the configured text model (here a tiny one, so meaning is noise: the
    # quality of the real model is measured by benchmarks/bench_search.py)
    service = SimilarityService(home)
    assert service.text_search.rankers == ["keyword", "text"]
    found = service.search("KMS1", 3)
    assert found[0]["artwork_id"] == "smk:KMS1" and found[0]["score"] == 1.0 and len(found) == 3
    assert any("text" in r["ranks"] for r in service.search("wheat field", 10))
    page = (home / "maps" / "collection_map.html").read_text()
    assert latest_metadata(instance, "collection_map")["projection"] == "umap"
    assert "met:436535" in page and "<script src" not in page
    model = defs.load_asset_value("similarity_model").row(0, named=True)
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri())
    run = client.get_run(model["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert {"lr", "temperature", "fusion", "data_version.weak_pairs", "data_version.image_embeddings"} <= set(run.data.params)
    from artsim_pipeline.core.features import frame_fingerprint

    chunks = pl.concat([defs.load_asset_value("image_embeddings", partition_key=f"bucket{i}") for i in range(8)])
    used = chunks.filter(pl.col("model_id") == run.data.params["image_model_id"]).select("image_sha256", "model_id")
    assert run.data.params["data_version.image_embeddings"] == frame_fingerprint(used)  # the vectors it trained on
    assert len(client.get_metric_history(run.info.run_id, "val_map_at_10")) == model["epochs_run"]
    assert {"test_trained_recall_at_10", "test_backbone_recall_at_10", "test_random_recall_at_10",
            "test_trained_agreement_department", "test_backbone_real_photo_agreement_department",
            "test_trained_minus_backbone_stand_in_agreement_classification", "gate_serves_trained"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/recall_at_k.png", "evaluation/similarity_histograms.png"} <= artifacts
    assert client.get_latest_versions("artsim-similarity-head")
    meta = latest_metadata(instance, "similarity_model")
    assert meta["mlflow_run"].endswith(model["mlflow_run_id"])
    evaluation = defs.load_asset_value("similarity_evaluation")
    assert set(evaluation["model"]) == {"trained", "backbone", "random"}
    # stand-in and real-photo works are reported apart, every figure with its queries
    assert set(evaluation["group"]) == {"all", "stand-in", "real photo"}
    assert {"weak_pair_recall_at_10", "weak_pair_map_at_10", "agreement_department", "agreement_classification",
            "agreement_culture", "agreement_period"} <= set(evaluation["criterion"])
    assert (evaluation["n_queries"] > 0).all()
    real = evaluation.filter((pl.col("group") == "real photo") & (pl.col("criterion") == "agreement_department"))
    assert real.height == 3 and real["n_queries"][0] >= 10

    def recall(model):
        return evaluation.filter((pl.col("model") == model) & (pl.col("group") == "all")
                                 & (pl.col("criterion") == "weak_pair_recall_at_10"))["value"].item()

    assert recall("backbone") > recall("random")  # even a tiny random ViT sees the stand-ins' palettes
    from artsim_pipeline.core.ml.agreement import gate_from_rows

    decision = gate_from_rows(evaluation.to_dicts())
    vectors = defs.load_asset_value("artwork_vectors")
    assert set(vectors["vector_source"]) == {"trained" if decision.serve_trained else "backbone"}  # the gate decides
    evaluation_meta = latest_metadata(instance, "similarity_evaluation")
    assert evaluation_meta["vectors_served"] == vectors["vector_source"][0]
    assert "| group | criterion | n_queries | trained | backbone | random |" in evaluation_meta["evaluation"]
    assert latest_metadata(instance, "artwork_vectors")["gate"] == decision.reason
    dept = latest_metadata(instance, "department_classifier")
    assert dept["accuracy"] > dept["baseline_accuracy"]
    classifier_runs = client.search_runs([client.get_experiment_by_name("artsim-classifiers").experiment_id])
    assert any(r.data.tags.get("task") == "department" for r in classifier_runs)


def test_a_second_run_with_nothing_changed_recomputes_nothing_but_ingestion(pipeline):
    from artsim_pipeline.cli import materialize_all

    home, encoder, instance = pipeline
    report = materialize_all(instance=instance, resources={"encoder": encoder}, run_config=TRAINING)
    assert report["recomputed"] == [f"raw_objects[{source}]" for source in ("met", "smk", "cma", "aic", "met_medialab")]
    assert report["up_to_date"] >= 20  # every other asset (partition) was found up to date


def test_the_real_photographs_go_all_the_way_to_the_index(pipeline, capsys):
    """The collection export `met_medialab` (real photographs): ingested, validated, paired,
    embedded, trained on and indexed beside the stand-ins; `artsim similar` answers for it."""
    from artsim_pipeline.cli import main
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.summary import collect_summary

    home, _, _ = pipeline
    defs = build_defs("sample")
    artworks = defs.load_asset_value("artworks", partition_key="met_medialab")
    assert artworks.height == 428 and artworks["image_sha256"].is_not_null().all()
    images = defs.load_asset_value("raw_images", partition_key="met_medialab")
    embedded = set(pl.concat([defs.load_asset_value("image_embeddings", partition_key=f"bucket{i}") for i in range(8)])["image_sha256"])
    assert set(images["sha256"]) <= embedded  # all 427 photographs
    pairs = defs.load_asset_value("weak_pairs")
    ends = pl.concat([pairs["artwork_id_a"], pairs["artwork_id_b"]])
    assert ends.str.starts_with("met_medialab:").sum() > 0
    vectors = defs.load_asset_value("artwork_vectors")
    assert vectors.filter(pl.col("artwork_id").str.starts_with("met_medialab:")).height == 428
    assert main(["similar", "met_medialab:195533", "-k", "3", "--source", "met_medialab", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 3 and {r["source"] for r in results} == {"met_medialab"}
    assert any(line.startswith("artworks[met_medialab]: 428 rows") for line in collect_summary())


def test_the_summary_counts_what_the_stored_tables_hold(pipeline):
    """The summary reads only the columns it counts: its figures are those of the whole tables."""
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.summary import _counts, collect_summary

    defs = build_defs("sample")
    summary = collect_summary()
    raw = defs.load_asset_value("raw_objects", partition_key="met")
    images = defs.load_asset_value("raw_images", partition_key="smk")
    pairs = defs.load_asset_value("weak_pairs")
    chunks = pl.concat([defs.load_asset_value("image_embeddings", partition_key=f"bucket{i}") for i in range(8)])
    vectors = defs.load_asset_value("artwork_vectors")
    assert f"raw_objects[met]: {raw.height} rows {_counts(raw, 'status')}" in summary
    assert f"raw_images[smk]: {images.height} rows {_counts(images, 'status')}" in summary
    assert any(line.startswith(f"weak_pairs: {pairs.height} pairs, by rule {_counts(pairs, 'rule')}") for line in summary)
    assert f"image_embeddings: {chunks.height} vectors {_counts(chunks, 'model_id')}" in summary
    assert f"artwork_vectors: {vectors.height} works, vectors from the {vectors['vector_source'][0]} model" in summary
    assert any(line.startswith("example: artsim similar ") for line in summary)
    assert any(line.startswith("example: artsim search ") for line in summary)


def test_the_museums_added_through_the_registry_go_through_the_pipeline(pipeline, capsys):
    """Cleveland (`cma`, 76 works with stand-ins) and the AIC (`aic`, 21 works, none known to be
    public domain, so no image) are ingested and validated; Cleveland's works are paired with the
    same makers at the Met, embedded, indexed and answered for; the map and summary name both."""
    from artsim_pipeline.cli import main
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.summary import collect_summary

    home, _, _ = pipeline
    defs = build_defs("sample")
    assert defs.load_asset_value("artworks", partition_key="cma").height == 76
    assert defs.load_asset_value("artworks", partition_key="aic").height == 21
    pairs = defs.load_asset_value("weak_pairs").filter(pl.col("rule") == "cross_museum_artist")
    ends = {tuple(sorted(a.split(":")[0] for a in p)) for p in pairs.select("artwork_id_a", "artwork_id_b").iter_rows()}
    assert ("cma", "met") in ends  # Degas, Monet, van Gogh, Courbet, Rembrandt ... at both
    vectors = defs.load_asset_value("artwork_vectors")
    assert vectors.filter(pl.col("artwork_id").str.starts_with("cma:")).height == 76
    assert main(["similar", "cma:137259", "-k", "3", "--source", "met", "--json"]) == 0
    assert {r["source"] for r in json.loads(capsys.readouterr().out)} == {"met"}
    summary = collect_summary()
    assert any(line.startswith("artworks[cma]: 76 rows") for line in summary)
    assert any(line.startswith("artworks[aic]: 21 rows") for line in summary)
    assert "Cleveland (cma)" in (home / "maps" / "collection_map.html").read_text()


def _stale_with_downstream(instance, graph, keys: set, partition: str | None) -> set:
    """The `keys` that are missing or stale, plus those among `keys` downstream of them: what may
    have to run (what does depends on what the stale ones produce)."""
    from dagster import AssetSelection

    from artsim_pipeline.materialize import _stale_or_missing

    stale = _stale_or_missing(instance, graph, keys, partition)
    return AssetSelection.assets(*stale).downstream().resolve(graph) & keys if stale else set()


def test_pairs_mined_again_to_the_same_table_leave_training_up_to_date(pipeline):
    """weak_pairs reports its content as data version: mining it again from unchanged artworks
    gives the same table, so nothing after it becomes stale (the model is not retrained)."""
    from artsim_pipeline.definitions import build_defs

    _, encoder, instance = pipeline
    defs = build_defs("sample")
    before = instance.get_latest_materialization_event(AssetKey("weak_pairs")).asset_materialization
    result = materialize(list(defs.assets), selection=[AssetKey("weak_pairs")], resources={**defs.resources, "encoder": encoder},
                         instance=instance)
    assert result.success
    after = instance.get_latest_materialization_event(AssetKey("weak_pairs")).asset_materialization
    assert after.tags["dagster/data_version"] == before.tags["dagster/data_version"] == after.metadata["fingerprint"].value
    graph = defs.resolve_asset_graph()
    unpartitioned = {k for k in graph.materializable_asset_keys if not graph.get(k).is_partitioned}
    stale = {k.to_user_string() for k in _stale_with_downstream(instance, graph, unpartitioned, None)}
    assert not stale & {"weak_pairs", "similarity_model", "similarity_evaluation", "artwork_vectors", "ann_index"}


def test_automation_follows_changed_data_versions_only(pipeline):
    """The declarative automation requests nothing when nothing changed, and exactly the direct
    dependants of an input whose data version changed."""
    from dagster import AssetMaterialization, evaluate_automation_conditions
    from dagster._core.definitions.data_version import DATA_VERSION_TAG

    from artsim_pipeline.definitions import build_defs

    _, _, instance = pipeline
    defs = build_defs("sample")
    first = evaluate_automation_conditions(defs=defs, instance=instance)
    # (curator_judgments is observed on a 5-minute cron: a tick may fall between two evaluations)
    judgments = len(first.get_requested_partitions(AssetKey("curator_judgments")))
    assert first.total_requested == judgments
    # a re-ingest that found the same records: same data version, nothing follows
    same = instance.get_latest_data_version_record(AssetKey("raw_objects"), partition_key="smk").asset_materialization.tags[DATA_VERSION_TAG]
    instance.report_runless_asset_event(AssetMaterialization("raw_objects", partition="smk", tags={DATA_VERSION_TAG: same}))
    unchanged = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert unchanged.total_requested == len(unchanged.get_requested_partitions(AssetKey("curator_judgments")))
    # new SMK records: validation and the image download follow, and nothing for the Met
    instance.report_runless_asset_event(AssetMaterialization("raw_objects", partition="smk", tags={DATA_VERSION_TAG: "new-records"}))
    changed = evaluate_automation_conditions(defs=defs, instance=instance, cursor=unchanged.cursor)
    requested = {(key, partition) for key in ("raw_images", "artworks", "artworks_quarantine", "weak_pairs", "raw_objects")
                 for partition in changed.get_requested_partitions(AssetKey(key))}
    assert requested == {("raw_images", "smk"), ("artworks", "smk"), ("artworks_quarantine", "smk")}


def test_raw_tables_are_fresh_now_and_stale_after_a_missed_night(pipeline):
    """The freshness policy of the raw tables, evaluated the way Dagster's freshness daemon does."""
    import asyncio
    from datetime import timedelta

    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.freshness import FreshnessState
    from dagster._core.definitions.freshness_evaluator import TimeWindowFreshnessPolicyEvaluator
    from dagster._core.test_utils import freeze_time
    from dagster._time import get_current_datetime

    from artsim_pipeline.definitions import build_defs

    _, _, instance = pipeline
    graph = build_defs("sample").resolve_asset_graph()

    def state(key: str, later: timedelta):
        with freeze_time(get_current_datetime() + later):
            view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                                  instance=instance, asset_graph=graph)
            return asyncio.run(TimeWindowFreshnessPolicyEvaluator().evaluate_freshness(view, graph.get(AssetKey(key))))

    for key in ("raw_objects", "raw_images"):
        assert state(key, timedelta(0)) == FreshnessState.PASS
        assert state(key, timedelta(hours=25)) == FreshnessState.WARN
        assert state(key, timedelta(hours=27)) == FreshnessState.FAIL
    assert graph.get(AssetKey("weak_pairs")).freshness_policy is None


def test_the_index_passes_its_gate_and_artsim_similar_answers(pipeline, capsys):
    from artsim_pipeline.cli import main

    home, _, instance = pipeline
    from dagster import AssetCheckKey

    assert latest_metadata(instance, "ann_index")["recall_at_10"] >= 0.98
    key = AssetCheckKey(AssetKey("ann_index"), "recall_at_10_vs_exact")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    assert record.status.value == "SUCCEEDED"
    assert main(["similar", "met:436535", "-k", "5", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 5 and all(r["artwork_id"] != "met:436535" for r in results)
    assert set(results[0]) >= {"artwork_id", "score", "title", "artists", "source", "landing_url"}
    assert results == sorted(results, key=lambda r: -r["score"])
    assert main(["similar", "met:436535", "-k", "3", "--source", "smk", "--json"]) == 0
    assert {r["source"] for r in json.loads(capsys.readouterr().out)} == {"smk"}
    assert main(["similar", "met:0"]) == 2
    assert "unknown artwork id" in capsys.readouterr().err
    # a local image file, embedded with the model's backbone: its own work comes first
    images = pl.read_parquet(home / "storage" / "raw_images" / "met.parquet").filter(pl.col("status") == "ok")
    row = images.row(0, named=True)
    assert main(["similar", "--image", str(home / "images" / row["path"]), "-k", "3", "--json"]) == 0
    by_image = json.loads(capsys.readouterr().out)
    assert len(by_image) == 3 and by_image[0]["score"] > 0.99
    owners = set(images.filter(pl.col("sha256") == row["sha256"])["source_id"].to_list())
    assert by_image[0]["artwork_id"].split(":", 1)[1] in owners
    broken = home / "not_an_image.jpg"
    broken.write_bytes(b"garbage")
    assert main(["similar", "--image", str(broken)]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_artsim_embed_writes_vectors_in_the_index_space(pipeline, capsys, tmp_path):
    import numpy as np

    from artsim_pipeline.cli import main

    home, _, _ = pipeline
    images = pl.read_parquet(home / "storage" / "raw_images" / "met.parquet").filter(pl.col("status") == "ok")
    row = images.row(0, named=True)
    image = home / "images" / row["path"]
    renamed = tmp_path / "a photo with spaces.jpg"
    renamed.write_bytes(image.read_bytes())
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert main(["embed", str(image), str(broken), str(renamed), str(tmp_path / "missing.jpg")]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["path"] for line in lines] == [str(image), str(renamed)]
    assert f"cannot embed {broken}" in captured.err and f"cannot embed {tmp_path / 'missing.jpg'}" in captured.err
    # the vector is the one the index holds for the work with that image
    vectors = pl.read_parquet(home / "storage" / "artwork_vectors.parquet")
    owner = images.filter(pl.col("sha256") == row["sha256"])["source_id"][0]
    stored = np.asarray(vectors.filter(pl.col("artwork_id") == f"met:{owner}")["vector"][0])
    got = np.asarray(lines[0]["vector"])
    assert got.shape == stored.shape and float(got @ stored) > 0.999
    served = vectors["vector_source"][0]
    assert ("+models/similarity_model/" in lines[0]["model_id"]) == (served == "trained")
    # --raw: the backbone's vector, written as Parquet
    out = tmp_path / "raw.parquet"
    assert main(["embed", str(image), "--raw", "--out", str(out)]) == 0
    raw = pl.read_parquet(out)
    assert raw.columns == ["path", "model_id", "vector"] and raw.height == 1
    assert "+models/" not in raw["model_id"][0]
    assert main(["embed", str(broken)]) == 2
    assert "no image could be embedded" in capsys.readouterr().err


def test_ann_index_adds_and_deletes_without_rebuild_and_rebuilds_for_a_new_model(pipeline):
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.resources.tables import TableStore

    home, encoder, instance = pipeline
    defs = build_defs("sample")
    store = TableStore(base_dir=str(home / "storage"))
    vectors = store.read_table("artwork_vectors")
    assets = list(defs.assets)
    resources = {**defs.resources, "encoder": encoder}
    store.write_table(vectors.slice(5), "artwork_vectors")  # five works disappear
    result = materialize(assets, selection=[AssetKey("ann_index")], resources=resources, instance=instance)
    meta = latest_metadata(instance, "ann_index")
    assert result.success and meta["rebuilt"] is False and meta["update"]["deleted"] == 5
    store.write_table(vectors, "artwork_vectors")  # they come back: added, no rebuild
    materialize(assets, selection=[AssetKey("ann_index")], resources=resources, instance=instance)
    meta = latest_metadata(instance, "ann_index")
    assert meta["rebuilt"] is False and meta["update"]["added"] == 5 and meta["live_items"] == vectors.height
    store.write_table(vectors.with_columns(model_run_id=pl.lit("another-run")), "artwork_vectors")
    materialize(assets, selection=[AssetKey("ann_index")], resources=resources, instance=instance)
    assert latest_metadata(instance, "ann_index")["rebuilt"] is True
    store.write_table(vectors, "artwork_vectors")
    # a search_dim below the vectors' (the tests' model is smaller than the default 128) rebuilds
    # it two-stage; the recall check still passes; the default config rebuilds it back
    dim = latest_metadata(instance, "ann_index")["dim"]
    two_stage = {"ops": {"ann_index": {"config": {"search_dim": dim // 2}}}}
    result = materialize(assets, selection=[AssetKey("ann_index")], resources=resources, instance=instance, run_config=two_stage)
    meta = latest_metadata(instance, "ann_index")
    assert result.success and meta["rebuilt"] is True and meta["search_dim"] == dim // 2 and meta["recall_at_10"] >= 0.98
    assert (home / "indexes" / "ann_index" / "full_vectors.f16.npy").is_file()
    materialize(assets, selection=[AssetKey("ann_index")], resources=resources, instance=instance)
    assert latest_metadata(instance, "ann_index")["search_dim"] == dim


def test_held_out_curator_judgments_are_scored_by_mean_rank(pipeline):
    import mlflow

    from artsim_pipeline import settings
    from artsim_pipeline.resources.artefacts import record_judgment
    from artsim_pipeline.definitions import build_defs

    home, encoder, instance = pipeline
    defs = build_defs("sample")
    pairs = defs.load_asset_value("weak_pairs")
    vectors = defs.load_asset_value("artwork_vectors")
    have = set(vectors["artwork_id"].to_list())
    test_ids = [i for i in dict.fromkeys(pairs.filter(pl.col("split") == "test")["artwork_id_a"].to_list()) if i in have]
    anchor, candidates = test_ids[0], test_ids[1:9]
    record_judgment(home, anchor, candidates, candidates[0], "curator-1")
    resources = {**defs.resources, "encoder": encoder}
    result = materialize(list(defs.assets), selection=[AssetKey("similarity_evaluation")], resources=resources, instance=instance)
    assert result.success
    ranks = latest_metadata(instance, "similarity_evaluation")["curator_mean_rank_of_pick"]
    assert ranks["judgments"] == 1 and 1.0 <= ranks["trained"] <= 8.0 and 1.0 <= ranks["backbone"] <= 8.0
    run_id = defs.load_asset_value("similarity_model")["mlflow_run_id"][0]
    metrics = mlflow.MlflowClient(settings.mlflow_tracking_uri()).get_run(run_id).data.metrics
    assert metrics["curator_mean_rank_trained"] == ranks["trained"]


def test_new_judgments_make_weak_pairs_and_everything_after_it_stale(pipeline):
    """Runs after the judgment above was recorded: observing `curator_judgments` gives a new data
    version, so the next `artsim materialize` mines pairs and retrains."""
    from artsim_pipeline.materialize import _observe_sources
    from artsim_pipeline.definitions import build_defs

    _, _, instance = pipeline
    defs = build_defs("sample")
    graph = defs.resolve_asset_graph()
    unpartitioned = {k for k in graph.materializable_asset_keys if not graph.get(k).is_partitioned}
    _observe_sources(defs, instance, dict(defs.resources))
    stale = {k.to_user_string() for k in _stale_with_downstream(instance, graph, unpartitioned, None)}
    assert {"weak_pairs", "similarity_model", "artwork_vectors", "ann_index"} <= stale
    assert "text_embeddings" not in stale and "department_classifier" not in stale


def test_retraining_reports_the_curators_mean_rank_before_and_after(pipeline):
    """After retraining, the evaluation ranks the held-out picks with the new model and with the
    previous registered version, on the same judgments, into the new run's MLflow metrics."""
    import mlflow

    from artsim_pipeline import settings
    from artsim_pipeline.definitions import build_defs

    _, encoder, instance = pipeline
    defs = build_defs("sample")
    before = defs.load_asset_value("similarity_model").row(0, named=True)
    keys = [AssetKey("weak_pairs"), AssetKey("similarity_model"), AssetKey("similarity_evaluation")]
    config = {"ops": {"similarity_model": TRAINING["ops"]["similarity_model"]}}
    result = materialize(list(defs.assets), selection=keys, resources={**defs.resources, "encoder": encoder},
                         instance=instance, run_config=config)
    assert result.success
    after = defs.load_asset_value("similarity_model").row(0, named=True)
    assert after["mlflow_run_id"] != before["mlflow_run_id"]
    ranks = latest_metadata(instance, "similarity_evaluation")["curator_mean_rank_of_pick"]
    assert ranks["previous_model_version"] == before["registered_version"]
    assert 1.0 <= ranks["previous"] <= 8.0 and 1.0 <= ranks["trained"] <= 8.0
    metrics = mlflow.MlflowClient(settings.mlflow_tracking_uri()).get_run(after["mlflow_run_id"]).data.metrics
    assert metrics["curator_mean_rank_previous"] == ranks["previous"]
    assert metrics["curator_mean_rank_trained"] == ranks["trained"]


def test_what_ingestion_finds_is_carried_downstream_in_the_same_run(pipeline):
    """SMK withdraws a work: the same `materialize_all` re-validates SMK and retrains, and leaves
    the Met partitions and the image embeddings alone. (Last in this module: it changes the data.)"""
    from artsim_pipeline.cli import materialize_all
    from artsim_pipeline.resources.museum_api import MuseumApiResource

    class OneSmkWorkWithdrawn(MuseumApiResource):
        def client(self, source):
            client = super().client(source)
            if source == "smk":
                client._records.pop(sorted(client._records)[0])
            return client

    _, encoder, instance = pipeline
    report = materialize_all(["smk"], instance=instance, resources={"encoder": encoder, "museum_api": OneSmkWorkWithdrawn()},
                             run_config=TRAINING)
    recomputed = set(report["recomputed"])
    assert {"raw_objects[smk]", "artworks[smk]", "artworks_quarantine[smk]", "weak_pairs", "similarity_model", "ann_index"} <= recomputed
    assert not any(k.startswith("image_embeddings") or "[met]" in k or "[met_medialab]" in k for k in recomputed)  # same images
    assert latest_metadata(instance, "raw_objects")["gone"] == 1


def test_retitling_one_percent_of_the_met_retrains_nothing(pipeline):
    """Issue #18: the titles (and `metadataDate`) of 1% of the Met records change. The next
    `artsim materialize` re-normalises the Met, finds the fields pairs are mined from unchanged,
    embeds the changed texts and updates the search index in place; the image embeddings, the
    weak pairs, the model, its evaluation, the vectors, the similarity index and the classifiers
    stay as they are, because nothing they read changed content (data versions, not
    materialisations, decide). The near-duplicates and the clusters' summary reuse what they
    found and show the new titles."""
    from datetime import datetime, timezone

    from artsim_pipeline.cli import materialize_all
    from artsim_pipeline.core.text_search import TEXT_DIR
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.resources.museum_api import MuseumApiResource

    class OnePercentRetitled(MuseumApiResource):
        def client(self, source):
            client = super().client(source)
            if source == "met":
                now = datetime.now(timezone.utc).isoformat()
                for key in sorted(client._records)[::100]:
                    record = {**client._records[key][1], "metadataDate": now}
                    record["title"] = f"{record.get('title') or ''} (retitled)"
                    client._records[key] = (client.rules.snapshot_text(record, json.dumps(record)), record)
            return client

    _, encoder, instance = pipeline
    untouched = ("weak_pairs", "similarity_model", "similarity_evaluation", "artwork_vectors", "ann_index", "department_classifier",
                 "period_classifier", *(f"image_embeddings[bucket{i}]" for i in range(8)))

    def latest(key: str):
        name, _, partition = key.partition("[")
        record = instance.get_latest_data_version_record(AssetKey(name), partition_key=partition.rstrip("]") or None)
        return record.storage_id

    before = {key: latest(key) for key in untouched}
    pairs_before = latest_metadata(instance, "weak_pairs")["fingerprint"]
    report = materialize_all(["met"], instance=instance, resources={"encoder": encoder, "museum_api": OnePercentRetitled()},
                             run_config=TRAINING)
    recomputed = set(report["recomputed"])
    assert {"raw_objects[met]", "artworks[met]", "pair_mining_fields", "training_labels", "text_embeddings", "model_text_features",
            "search_index"} <= recomputed
    assert not recomputed & set(untouched) and not any(k.startswith("image_embeddings") for k in recomputed)
    assert {key: latest(key) for key in untouched} == before  # no new materialisation event either
    assert latest_metadata(instance, "weak_pairs")["fingerprint"] == pairs_before
    retitled = build_defs("sample").load_asset_value("artworks", partition_key="met").filter(pl.col("title").str.ends_with("(retitled)"))
    assert retitled.height >= 15
    assert latest_metadata(instance, "text_embeddings")["embedded_this_run"] == retitled.height
    text_update = latest_metadata(instance, "search_index")["updates"][TEXT_DIR]
    assert text_update["rebuilt"] is False and text_update["updated"] == retitled.height and text_update["added"] == 0
    assert {"near_duplicates", "clusters"} <= recomputed
    assert latest_metadata(instance, "near_duplicates")["reused_pairs"] is True
    assert latest_metadata(instance, "clusters")["summary_reused"] is True
    titles = build_defs("sample").load_asset_value("artworks", partition_key="met").select("artwork_id", "title")
    shown = build_defs("sample").load_asset_value("near_duplicates").select(pl.col("artwork_id_a").alias("artwork_id"), pl.col("title_a"))
    assert shown.join(titles, on="artwork_id").filter(pl.col("title_a") != pl.col("title")).height == 0
