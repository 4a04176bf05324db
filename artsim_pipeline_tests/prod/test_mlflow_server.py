"""The project's MLflow code against a real tracking server, as in production: `mlflow server`
with its store in PostgreSQL and artifacts proxied to S3 (a moto server), all on 127.0.0.1.

The client only knows the server's http:// URL: artifacts travel through the server
(`mlflow-artifacts:/` URIs), so it needs no S3 credentials; the server writes them to the bucket.
"""

from __future__ import annotations

from artsim_pipeline.resources.mlflow_tracking import MlflowResource

ARTIFACT_PREFIX = "mlflow-artifacts/"


def test_runs_params_metrics_artifacts_and_a_model_version_go_to_the_server_and_s3(mlflow_server, s3, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    resource = MlflowResource(tracking_uri=mlflow_server.url)
    report = tmp_path / "report.json"
    report.write_text('{"recall_at_10": 0.5}')

    with resource.start_run(resource.similarity_experiment, "prod-profile-check", tags={"artsim/test": "prod"}) as run:
        resource.log_params({"train": {"epochs": 3, "lr": 0.01}, "backbone": "tiny"})
        resource.log_metrics({"recall_at_10": 0.5, "map_at_10": 0.25, "note": "not a number"}, prefix="test_")
        assert resource.log_files([report], artifact_path="reports") == ["reports/report.json"]
    run_id = run.info.run_id
    assert mlflow.get_tracking_uri() != mlflow_server.url  # start_run restored the previous URI

    # read back through a plain client of the server
    client = MlflowClient(tracking_uri=mlflow_server.url)
    stored = client.get_run(run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params["train.epochs"] == "3" and stored.data.params["backbone"] == "tiny"
    assert stored.data.metrics == {"test_recall_at_10": 0.5, "test_map_at_10": 0.25}
    assert stored.data.tags["artsim/test"] == "prod"
    assert stored.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied by the server
    assert [a.path for a in client.list_artifacts(run_id, "reports")] == ["reports/report.json"]
    experiment = client.get_experiment(stored.info.experiment_id)
    assert experiment.name == resource.similarity_experiment
    assert resource.run_url(experiment.experiment_id, run_id).startswith(mlflow_server.url + "/#/experiments/")

    # the model registry (in Postgres): a version pointing at this run's artifacts. (Not through
    # log_torch_model: `import mlflow.pytorch` alone takes ~10 s here; the registry is the same.)
    name = resource.registered_model_name
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    created = client.create_model_version(name, source=f"{stored.info.artifact_uri}/reports", run_id=run_id)
    version = client.get_model_version(name, created.version)
    assert version.run_id == run_id and version.status == "READY"
    assert created.version in {v.version for v in client.search_model_versions(f"name = '{name}'")}

    # the artifact objects are in the bucket, under the server's --artifacts-destination
    keys = s3.keys(ARTIFACT_PREFIX)
    report_keys = [k for k in keys if k.endswith(f"{run_id}/artifacts/reports/report.json")]
    assert report_keys, keys
    assert s3.read_text(report_keys[0]) == '{"recall_at_10": 0.5}'
