"""deploy/prod/dagster.yaml as a real Dagster instance: run storage in a real PostgreSQL server,
compute logs in S3 (a moto server), both on 127.0.0.1, and a real materialisation of the ingest
and validation assets (SMK partition of the bundled sample) recorded in it.

The asset resources are the `sample` ones (local Parquet under a temp ARTSIM_HOME): this checks
the *instance* side of the prod profile; S3 asset storage has its own tests.
"""

from __future__ import annotations

import json
import shutil
import tempfile

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, DagsterRunStatus, materialize

from artsim_pipeline.settings import REPO_ROOT

PROD_YAML = REPO_ROOT / "deploy" / "prod" / "dagster.yaml"
LOG_PREFIX = "dagster/compute-logs"
INGEST_KEYS = ["raw_objects", "raw_images", "artworks", "artworks_quarantine"]


@pytest.fixture
def prod_instance(tmp_path, monkeypatch, postgres, s3, aws_env):
    """DAGSTER_HOME holding an unchanged copy of deploy/prod/dagster.yaml, its variables set."""
    database = postgres.create_database("dagster_prod")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROD_YAML, home / "dagster.yaml")
    for name, value in {
        **postgres.env(database),
        "DAGSTER_HOME": str(home),
        "ARTSIM_S3_BUCKET": s3.bucket,
        "ARTSIM_S3_LOG_PREFIX": LOG_PREFIX,
        "ARTSIM_S3_ENDPOINT_URL": s3.endpoint_url,
        "ARTSIM_ENV": "sample",
        "ARTSIM_HOME": str(tmp_path / "artsim_home"),
        "TMPDIR": str(tmp_path / "tmp"),  # S3ComputeLogManager stages logs in the temp dir
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # make tempfile read TMPDIR again
    with DagsterInstance.get() as instance:
        yield instance, database


def test_prod_instance_records_a_real_materialisation_in_postgres_and_logs_in_s3(prod_instance, postgres, s3):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from artsim_pipeline.definitions import build_defs

    instance, database = prod_instance
    # the file was read as written: Postgres storages, S3 logs, the queue with its tag limits
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert instance.get_settings("freshness") == {"enabled": True}
    limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": "artsim/gpu", "limit": 1} in limits
    assert not instance.telemetry_enabled

    defs = build_defs("sample")
    result = materialize(
        list(defs.assets),
        selection=[AssetKey(k) for k in INGEST_KEYS],
        partition_key="smk",
        resources=defs.resources,
        instance=instance,
    )
    assert result.success
    run_id = result.run_id

    # --- through the instance's API
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == DagsterRunStatus.SUCCESS
    for key in INGEST_KEYS:
        event = instance.get_latest_materialization_event(AssetKey(key))
        assert event is not None, key
        assert event.run_id == run_id
        assert event.asset_materialization.partition == "smk"
    raw_meta = instance.get_latest_materialization_event(AssetKey("raw_objects")).asset_materialization.metadata
    assert raw_meta["rows"].value == 22  # every SMK item of the bundled sample
    checks = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey("artworks"), "schema_and_identity"), limit=5
    )
    assert checks and checks[0].run_id == run_id

    # --- and separately, straight from the Postgres tables
    connection = postgres.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
            assert cursor.fetchall() == [("SUCCESS",)]
            cursor.execute(
                "SELECT asset_key, partition FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                (run_id,),
            )
            stored = {(json.loads(asset_key)[0], partition) for asset_key, partition in cursor.fetchall()}
            cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,))
            (n_events,) = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM asset_check_executions WHERE run_id = %s", (run_id,))
            (n_check_rows,) = cursor.fetchone()
    finally:
        connection.close()
    assert stored == {(key, "smk") for key in INGEST_KEYS}
    assert n_events > 20 and n_check_rows >= 4

    # --- compute logs: uploaded to the bucket under the configured prefix, with the step output
    keys = s3.keys(f"{LOG_PREFIX}/storage/{run_id}/")
    assert any(k.endswith(".err") for k in keys) and any(k.endswith(".out") for k in keys), keys
    stderr = "".join(s3.read_text(k) for k in keys if k.endswith(".err"))
    assert "smk: listing names" in stderr  # raw_objects' context.log line, captured and uploaded
