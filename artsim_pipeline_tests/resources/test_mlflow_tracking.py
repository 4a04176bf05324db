"""The MLflow resource, the one way the pipeline talks to MLflow: a run on a local SQLite store
with params, per-epoch history, metrics, a figure and a registered model (a tracking server:
`prod/test_mlflow_server.py`)."""

from __future__ import annotations

import numpy as np
import pytest

from artsim_pipeline.core.ml.metrics import evaluate_retrieval
from artsim_pipeline.core.ml.similarity import apply_head
from artsim_pipeline.resources.mlflow_tracking import MlflowResource, flatten
from artsim_pipeline_tests.core.test_similarity import data, trained  # noqa: F401 - fixtures


def test_mlflow_run_has_params_history_figures_and_a_registered_model(tmp_path, monkeypatch, data, trained):
    import mlflow

    from artsim_pipeline.core.ml.metrics import plot_recall_curve

    ids, X, pairs, _ = data
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking = MlflowResource(tracking_uri=uri, registered_model_name="artsim-test-head")
    figure = plot_recall_curve({"trained": {1: 0.5, 10: 0.9}})
    with tracking.start_run("artsim-test", "similarity", tags={"asset": "similarity_model"}) as run:
        assert mlflow.get_tracking_uri() == uri
        logged = tracking.log_params({"train": trained.config.to_dict(), "data": {"n": len(ids)}})
        assert logged["train.temperature"] == "0.07" and logged["data.n"] == "300"
        assert tracking.log_history(trained.history) > 0
        tracking.log_metrics(evaluate_retrieval(ids, trained.embed(X), pairs), prefix="test_")
        tracking.log_png(figure, "figures/recall_at_k.png")
        info = tracking.log_torch_model(trained.head, X[:3])
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
    assert mlflow.get_tracking_uri() != uri  # restored

    client = mlflow.MlflowClient(tracking_uri=uri)
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.params["train.fusion"] == "image"
    assert finished.data.tags["asset"] == "similarity_model"
    steps = [m.step for m in client.get_metric_history(run_id, "val_map_at_10")]
    assert steps == list(range(trained.epochs_run))
    assert "test_recall_at_10" in finished.data.metrics
    assert [a.path for a in client.list_artifacts(run_id, "figures")] == ["figures/recall_at_k.png"]
    assert str(tmp_path) in finished.info.artifact_uri  # artifacts beside the store, not in cwd
    versions = client.search_model_versions("name='artsim-test-head'")
    assert len(versions) == 1 and versions[0].run_id == run_id
    assert info.registered_model_version == 1 or str(info.registered_model_version) == "1"
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, X.shape[1]]
    assert not client.search_runs([experiment_id], "attributes.status = 'RUNNING'")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = mlflow.pytorch.load_model(info.model_uri)  # a torch.export graph: no artsim code needed
    np.testing.assert_allclose(apply_head(loaded, X[:5]), trained.embed(X[:5]), atol=1e-6)

    with pytest.raises(RuntimeError, match="boom"):
        with tracking.start_run("artsim-test", "fails"):
            raise RuntimeError("boom")
    failed = client.search_runs([experiment_id], "attributes.run_name = 'fails'")
    assert [r.info.status for r in failed] == ["FAILED"]
    assert tracking.run_url(experiment_id, run_id) == f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"


def test_params_are_flattened_and_cut_to_mlflows_limit():
    flat = flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x" * 7000})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "d": "x" * 6000}


def test_logging_outside_a_run_is_refused(tmp_path):
    tracking = MlflowResource(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(RuntimeError, match="no active MLflow run"):
        tracking.log_dict({"a": 1}, "a.json")
