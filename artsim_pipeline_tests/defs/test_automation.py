"""Schedules, the retrain sensor's cursor and the failure alert."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from dagster import (
    AssetMaterialization,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)

from artsim_pipeline.defs.operations.automation import nightly_ingest, retrain_on_new_labels, weekly_retrain


def test_nightly_ingest_requests_one_run_per_museum_keyed_by_day():
    when = datetime(2026, 11, 22, 3, tzinfo=timezone.utc)
    requests = list(nightly_ingest(build_schedule_context(scheduled_execution_time=when)))
    assert [r.partition_key for r in requests] == ["met", "smk", "cma", "aic", "met_medialab"]  # the APIs, then the export
    assert {r.run_key for r in requests} == {f"{s}-2026-11-22" for s in ("met", "smk", "cma", "aic", "met_medialab")}


def test_weekly_retrain_is_keyed_by_iso_week():
    request = weekly_retrain(build_schedule_context(scheduled_execution_time=datetime(2026, 11, 22, 5, tzinfo=timezone.utc)))
    assert isinstance(request, RunRequest) and request.run_key == "2026-W47"


def test_retrain_sensor_fires_once_per_weak_pairs_change():
    with DagsterInstance.ephemeral() as instance:
        assert isinstance(retrain_on_new_labels(build_sensor_context(instance=instance)), SkipReason)
        instance.report_runless_asset_event(AssetMaterialization("weak_pairs", metadata={"fingerprint": "aaa"}))
        first = retrain_on_new_labels(context := build_sensor_context(instance=instance))
        assert isinstance(first, RunRequest) and first.run_key == "weak_pairs-aaa"
        again = retrain_on_new_labels(build_sensor_context(instance=instance, cursor=context.cursor))
        assert isinstance(again, SkipReason)  # same pairs: no second request
        instance.report_runless_asset_event(AssetMaterialization("weak_pairs", metadata={"fingerprint": "bbb"}))
        changed = retrain_on_new_labels(build_sensor_context(instance=instance, cursor=context.cursor))
        assert isinstance(changed, RunRequest) and changed.run_key == "weak_pairs-bbb"


def test_definitions_carry_the_jobs_schedules_and_sensors(artsim_home):
    from artsim_pipeline.definitions import build_defs

    defs = build_defs("sample")
    assert defs.resolve_job_def("ingest_sources") and defs.resolve_job_def("retrain_similarity")
    assert {s.name for s in defs.schedules} == {"nightly_ingest", "weekly_retrain"}
    assert {s.name for s in defs.sensors} == {"retrain_on_new_labels", "pairs_from_new_judgments", "alert_on_run_failure",
                                              "automate_embeddings", "automate_pipeline"}
    graph = defs.resolve_asset_graph()
    from dagster import AssetKey

    assert graph.get(AssetKey("raw_objects")).pools == {"museum_api"}
    assert graph.get(AssetKey("image_embeddings")).pools == {"gpu"}
    # one partition per source of the registry: the collection export is a partition like the APIs
    for key in ("raw_objects", "raw_images", "artworks", "artworks_quarantine"):
        assert graph.get(AssetKey(key)).partitions_def.get_partition_keys() == ["met", "smk", "cma", "aic", "met_medialab"], key
    assert defs.resolve_job_def("ingest_sources").partitions_def.get_partition_keys() == ["met", "smk", "cma", "aic", "met_medialab"]


def test_embedding_runs_carry_the_gpu_tags_of_the_deployment(monkeypatch):
    """`embed_images` runs are counted by the queue's `artsim/gpu` limit and carry the launcher's
    GPU request from the file ARTSIM_GPU_RUN_TAGS names."""
    import json

    from artsim_pipeline import settings
    from artsim_pipeline.definitions import build_defs

    monkeypatch.delenv("ARTSIM_GPU_RUN_TAGS", raising=False)
    defs = build_defs("sample")
    assert defs.resolve_job_def("embed_images").tags == {"artsim/gpu": "1"}
    # chunks started by declarative automation carry the same tags
    sensor = next(s for s in defs.sensors if s.name == "automate_embeddings")
    assert sensor.run_tags == {"artsim/gpu": "1"}
    monkeypatch.setenv("ARTSIM_GPU_RUN_TAGS", str(settings.REPO_ROOT / "deploy" / "k8s" / "embedding-run-tags.yaml"))
    tags = build_defs("sample").resolve_job_def("embed_images").tags
    k8s = json.loads(tags["dagster-k8s/config"])
    assert tags["artsim/gpu"] == "1" and k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")


def test_a_failed_run_alerts_through_the_log_and_the_configured_webhook(monkeypatch, caplog):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from artsim_pipeline.defs.operations.automation import send_alert

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with caplog.at_level(logging.ERROR, logger="artsim.alerts"):
            monkeypatch.delenv("ARTSIM_ALERT_WEBHOOK", raising=False)
            send_alert("run r1 failed", {"run_id": "r1"})
            assert received == [] and "run r1 failed" in caplog.text
            monkeypatch.setenv("ARTSIM_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
            send_alert("run r2 failed", {"run_id": "r2", "job": "retrain_similarity"})
            assert received == [{"text": "run r2 failed", "run_id": "r2", "job": "retrain_similarity"}]
            server.shutdown()
            server.server_close()
            send_alert("run r3 failed", {"run_id": "r3"})  # a dead hook is logged, not raised
            assert "run r3 failed" in caplog.text and "alert webhook on 127.0.0.1 failed" in caplog.text
            assert "/hook" not in caplog.text  # the URL (a secret for chat webhooks) is never logged
    finally:
        server.server_close()


def test_the_automation_sensor_observes_curator_judgments_every_five_minutes(artsim_home):
    """New judgments are noticed without `artsim materialize`: the observation is automated."""
    from datetime import timedelta

    from dagster import AssetKey, evaluate_automation_conditions
    from dagster._core.test_utils import freeze_time

    from artsim_pipeline.definitions import build_defs

    defs = build_defs("sample")
    sensor = next(s for s in defs.sensors if s.name == "automate_pipeline")
    graph = defs.resolve_asset_graph()
    assert AssetKey("curator_judgments") in sensor.asset_selection.resolve(graph, allow_missing=True)
    start = datetime(2026, 11, 22, 12, 1, tzinfo=timezone.utc)
    with DagsterInstance.ephemeral() as instance:
        with freeze_time(start):
            first = evaluate_automation_conditions(defs=defs, instance=instance)
        with freeze_time(start + timedelta(minutes=5)):
            later = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert first.get_requested_partitions(AssetKey("curator_judgments")) == set()
    assert later.get_requested_partitions(AssetKey("curator_judgments")) == {None}
