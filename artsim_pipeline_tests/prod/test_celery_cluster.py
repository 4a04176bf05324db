"""Scale-out for real, as a small cluster on 127.0.0.1: the Postgres instance of
deploy/prod/dagster.yaml, asset storage on S3 (moto), a real `mlflow server`, and Dagster's Celery
executor (dagster-celery) with a Redis broker and two worker processes started the documented way
(`dagster-celery worker start -y deploy/celery/celery.yaml`) from the code location
deploy/celery/celery_definitions.py.

Each worker has its own `ARTSIM_HOME`, working directory, `TMPDIR`, `HOME`, `DAGSTER_HOME` and
its own copy of the (tiny) image model, installed in its own Hugging Face cache under one hub id,
the way a worker image or node would hold it. Nothing local is shared with the run or with the
other worker, so the runs succeed only if no asset depends on a local path or an in-process
object: every input comes from S3 (tables, images, the model head, the index) and every output
goes back there.

The ingestion (`raw_objects`, `raw_images`, `artworks`, `weak_pairs`) is materialised first, in
this process; then the eight `image_embeddings` chunks (one run each) and a run of every asset
after them go through the Celery executor, launched with `execute_job` from this process (the
run's own process, which only orchestrates: its `ARTSIM_HOME` must stay empty).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, materialize

from artsim_pipeline.core.sources import SOURCES
from artsim_pipeline.settings import REPO_ROOT
from artsim_pipeline_tests import servers
from artsim_pipeline_tests.prod.test_s3_storage import FAST_HTTP, TRAINING, prod_env, replay_records

PROD_YAML = REPO_ROOT / "deploy" / "prod" / "dagster.yaml"
CELERY_DIR = REPO_ROOT / "deploy" / "celery"
CELERY_YAML = CELERY_DIR / "celery.yaml"
CELERY_DEFS = CELERY_DIR / "celery_definitions.py"
LOG_PREFIX = "dagster/compute-logs"
HUB_ID = "artsim-test/tiny-vit"  # what every worker's own Hugging Face cache holds
UPSTREAM = ["raw_objects", "raw_images", "artworks", "artworks_quarantine"]
AFTER_EMBEDDINGS = ["text_embeddings", "training_labels", "model_text_features", "similarity_model", "similarity_evaluation", "artwork_vectors", "ann_index",
                    "near_duplicates", "clusters", "collection_map", "department_classifier", "period_classifier"]
WORKERS = ("w1", "w2")
BUCKETS = [f"bucket{i}" for i in range(8)]
SCRATCH_ONLY = {"scratch", "cache", "checkpoints"}


def install_in_hub_cache(model_dir: Path, cache: Path, repo_id: str) -> None:
    """Lay `model_dir` out as `repo_id` in a Hugging Face hub cache (as a download would), so that
    `from_pretrained(repo_id)` finds it offline. The backbone's model id is then the hub id on
    every worker, not a path that differs between machines."""
    commit = uuid.uuid5(uuid.NAMESPACE_URL, repo_id).hex + "00000000"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(model_dir, repo / "snapshots" / commit)


def files_under(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) if path.exists() else []


def process_group(pid: int) -> int | None:
    """The process group of a live process (field 5 of /proc/<pid>/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[2])


class Worker:
    """One `dagster-celery worker start` process group with its own directories."""

    def __init__(self, name: str, root: Path, env: dict[str, str], model_dir: Path):
        self.name = name
        self.root = root
        self.home = root / "artsim_home"
        self.cwd = root / "cwd"
        self.dagster_home = root / "dagster_home"
        for directory in (self.cwd, self.dagster_home, root / "tmp", root / "user_home"):
            directory.mkdir(parents=True)
        shutil.copy(PROD_YAML, self.dagster_home / "dagster.yaml")
        install_in_hub_cache(model_dir, root / "hf", HUB_ID)
        self.env = {
            **env,
            "ARTSIM_HOME": str(self.home),
            "DAGSTER_HOME": str(self.dagster_home),
            "TMPDIR": str(root / "tmp"),
            "HOME": str(root / "user_home"),
            "HF_HUB_CACHE": str(root / "hf"),
        }
        self.process: servers.ManagedProcess | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "worker.log"

    def start(self) -> None:
        args = [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                "-y", str(CELERY_YAML), "-n", self.name, "-l", "INFO",
                # import the code and the ML stack while the worker starts, not in its first step
                "-i", "artsim_pipeline.definitions", "-i", "torch", "-i", "transformers", "-i", "mlflow",
                # solo pool: the step runs in the worker process itself, which may start processes
                # (the embedding's DataLoader workers); prefork children are daemonic and may not
                "--", "--pool=solo", "--without-gossip", "--without-mingle"]
        # SIGTERM is Celery's warm shutdown; the whole group is killed after the grace period
        self.process = servers.start_process(f"celery worker {self.name}", args, self.log_path, env=self.env, cwd=self.cwd)

    def ready(self) -> bool:
        return self.log_path.exists() and re.search(rf"{self.name}@\S+ ready\.", self.log_path.read_text(errors="replace")) is not None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace_s=10)


def worker_env(base: dict[str, str]) -> dict[str, str]:
    """A clean environment (not this process's): the variables deploy/README.md lists, plus PATH."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",  # two workers share two cores
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **base,
    }


def step_events(instance: DagsterInstance, run_id: str, event_type: DagsterEventType) -> list:
    return list(instance.all_logs(run_id, of_type=event_type))


def test_celery_workers_sharing_no_directory_materialise_the_embedding_chunks_and_everything_after_them(
        tmp_path, monkeypatch, postgres, redis, s3, mlflow_server, shared_met_records, shared_smk_records, shared_paged_records,
        tiny_vit):
    from dagster import execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.resources.museum_api import MuseumApiResource
    from artsim_pipeline_tests.replay.server import ReplayServer

    timings: dict[str, float] = {}
    started = time.monotonic()
    database = postgres.create_database("dagster_celery")
    for db in (0, 1):  # no steps or results left on the queue by an earlier test
        redis.client(db).flushdb()
    prefix = f"celery-{uuid.uuid4().hex[:8]}"
    run_dagster_home = tmp_path / "run" / "dagster_home"
    run_dagster_home.mkdir(parents=True)
    shutil.copy(PROD_YAML, run_dagster_home / "dagster.yaml")
    upstream_home = tmp_path / "run" / "upstream_home"
    run_home = tmp_path / "run" / "artsim_home"  # the Celery runs' own ARTSIM_HOME: must stay empty
    run_home.mkdir()
    (tmp_path / "run" / "tmp").mkdir()
    shared = {
        **postgres.env(database),
        "ARTSIM_S3_BUCKET": s3.bucket,
        "ARTSIM_S3_LOG_PREFIX": LOG_PREFIX,
        "ARTSIM_CELERY_BROKER_URL": redis.url(0),
        "ARTSIM_CELERY_BACKEND_URL": redis.url(1),
    }

    with ReplayServer(met_records=replay_records(shared_met_records), smk_records=shared_smk_records,
                      records=shared_paged_records) as replay:
        base = {**prod_env(bucket=s3.bucket, prefix=prefix, endpoint_url=s3.endpoint_url, mlflow_url=mlflow_server.url,
                           home=upstream_home, base_urls=replay.base_urls,
                           backbone=f"hf:{HUB_ID}"), **shared}
        workers = [Worker(name, tmp_path / name, worker_env(base), tiny_vit) for name in WORKERS]
        # this process: the run's environment (the run's own DAGSTER_HOME, no model cache at all)
        for name, value in {**base, "DAGSTER_HOME": str(run_dagster_home), "TMPDIR": str(tmp_path / "run" / "tmp"),
                            "HF_HUB_CACHE": str(tmp_path / "run" / "no_models")}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        monkeypatch.setattr(tempfile, "tempdir", None)  # make tempfile read TMPDIR again
        try:
            for worker in workers:
                worker.start()  # they boot while the ingestion runs
            with DagsterInstance.get() as instance:
                # 1. ingestion and labels, in this process, recorded in the Postgres instance
                defs = build_defs("prod")
                resources = {**defs.resources, "museum_api": MuseumApiResource(
                    mode="live", met_base_url=replay.met_base_url, smk_base_url=replay.smk_base_url, base_urls=replay.base_urls,
                    **FAST_HTTP)}
                for source in SOURCES:
                    result = materialize(list(defs.assets), selection=[AssetKey(k) for k in UPSTREAM], partition_key=source,
                                         resources=resources, instance=instance)
                    assert result.success, source
                assert materialize(list(defs.assets), selection=[AssetKey("pair_mining_fields"), AssetKey("weak_pairs")], resources=resources,
                                   instance=instance).success
                timings["ingest in-process"] = time.monotonic() - started

                # 2. the workers, each answering on its own
                deadline = time.monotonic() + 120
                while not all(w.ready() for w in workers):
                    for w in workers:
                        if not w.process.alive():
                            pytest.fail(f"worker {w.name} exited:\n{servers.log_tail(w.log_path)}")
                    if time.monotonic() > deadline:
                        pytest.fail("workers not ready after 120 s:\n" + "\n".join(servers.log_tail(w.log_path) for w in workers))
                    time.sleep(0.5)
                timings["workers ready"] = time.monotonic() - started
                # deploy/README.md's check: both workers answer through the broker
                status = subprocess.run([str(Path(sys.executable).parent / "dagster-celery"), "status", "-A", "dagster_celery.app",
                                         "-y", str(CELERY_YAML)], env=workers[0].env, cwd=workers[0].cwd,
                                        capture_output=True, text=True, timeout=120)
                assert status.returncode == 0 and all(f"{w}@" in status.stdout for w in WORKERS), status.stdout + status.stderr

                # 3. the Celery runs: ARTSIM_HOME of the run process is now an empty directory
                monkeypatch.setenv("ARTSIM_HOME", str(run_home))
                recon = ReconstructableRepository.for_file(str(CELERY_DEFS), "defs", working_directory=str(CELERY_DIR))
                job = recon.get_reconstructable_job("__ASSET_JOB")
                run_ids = []
                for bucket in BUCKETS:  # one run per chunk, as `embed_images` is launched per partition
                    result = execute_job(job, instance, tags={"dagster/partition": bucket},
                                         asset_selection=[AssetKey("image_embeddings")])
                    run_ids.append(result.run_id)
                    assert result.success, f"image_embeddings[{bucket}]: " + "\n".join(servers.log_tail(w.log_path) for w in workers)
                timings["8 embedding runs"] = time.monotonic() - started - timings["workers ready"]
                after = time.monotonic()
                result = execute_job(job, instance, run_config={"ops": TRAINING["ops"]},
                                     asset_selection=[AssetKey(k) for k in AFTER_EMBEDDINGS])
                run_ids.append(result.run_id)
                assert result.success, "after the embeddings: " + "\n".join(servers.log_tail(w.log_path) for w in workers)
                timings["run after the embeddings"] = time.monotonic() - after

                # 4. where every step ran: a worker's process (by process group), never here
                groups = {w.process.pid: w.name for w in workers}
                ran_on: dict[str, set[str]] = {}
                hostnames: set[str] = set()
                for run_id in run_ids:
                    assert instance.get_run_by_id(run_id).status.value == "SUCCESS"
                    for entry in step_events(instance, run_id, DagsterEventType.STEP_START):
                        pid = entry.dagster_event.pid
                        assert pid != os.getpid(), f"{entry.step_key} ran in the run's own process"
                        worker = groups.get(process_group(pid))
                        assert worker is not None, f"{entry.step_key} ran in pid {pid}, in no worker's process group"
                        ran_on.setdefault(worker, set()).add(entry.step_key)
                    for entry in step_events(instance, run_id, DagsterEventType.ENGINE_EVENT):
                        metadata = entry.dagster_event.engine_event_data.metadata or {}
                        if "Celery worker" in metadata:
                            hostnames.add(metadata["Celery worker"].value)
                assert set(ran_on) == set(WORKERS), f"steps by worker: {ran_on}"
                assert set().union(*ran_on.values()) == {"image_embeddings", *AFTER_EMBEDDINGS}
                assert {h.split("@")[0] for h in hostnames} == set(WORKERS), hostnames
                assert all(h.endswith("@" + socket.gethostname()) for h in hostnames)
                # the workers uploaded each step's stdout/stderr (compute logs) to S3
                assert s3.keys(f"{LOG_PREFIX}/storage/{run_ids[-1]}/")
        finally:
            for worker in workers:
                worker.stop()
    timings["total"] = time.monotonic() - started

    # 5. outputs on S3, readable from here
    defs = build_defs("prod")
    embeddings = pl.concat([defs.load_asset_value("image_embeddings", partition_key=f"bucket{i}") for i in range(8)])
    # one model id on every worker: the hub id, not a worker's local path
    assert embeddings.height > 100 and embeddings["model_id"].n_unique() == 1
    assert embeddings["model_id"][0].startswith(f"hf:{HUB_ID}+pp")
    assert all(s3.keys(f"{prefix}/storage/image_embeddings/bucket{i}.parquet") for i in range(8))
    for key in AFTER_EMBEDDINGS:
        assert s3.keys(f"{prefix}/storage/{key}.parquet"), key
        assert isinstance(defs.load_asset_value(key), pl.DataFrame), key
    assert s3.keys(f"{prefix}/indexes/ann_index/") and s3.keys(f"{prefix}/maps/collection_map.html")
    model = defs.load_asset_value("similarity_model").row(0, named=True)
    assert s3.keys(f"{prefix}/models/similarity_model/{model['mlflow_run_id']}/")
    vectors = defs.load_asset_value("artwork_vectors")
    artworks = pl.concat([defs.load_asset_value("artworks", partition_key=p) for p in SOURCES], how="diagonal_relaxed")
    assert vectors.height > 100 and set(vectors["artwork_id"]) <= set(artworks["artwork_id"])

    # 6. nothing written locally by the steps where the run is, and only scratch/cache on the workers
    assert files_under(run_home) == [], "the steps wrote into the run's own ARTSIM_HOME"
    assert files_under(run_dagster_home) == ["dagster.yaml"] and files_under(tmp_path / "run" / "tmp") == []
    for worker in workers:
        left = {p.name for p in worker.home.iterdir()} if worker.home.exists() else set()
        assert left <= SCRATCH_ONLY, f"{worker.name}'s ARTSIM_HOME holds {sorted(left - SCRATCH_ONLY)}"
    cached = [w for w in workers if any(f.startswith("cache/") for f in files_under(w.home))]
    assert cached, "the workers read their inputs from S3 (through their own caches)"
    print("celery cluster timings:", {k: round(v, 1) for k, v in timings.items()},
          "steps by worker:", {k: sorted(v) for k, v in ran_on.items()},
          "worker cwd files:", {w.name: files_under(w.cwd)[:5] for w in workers})


def test_two_workers_creating_the_same_mlflow_experiment_at_once_both_get_it(mlflow_server, monkeypatch):
    """The classifiers run side by side on two workers and both create `artsim-classifiers` on
    first use: the one that loses the race must use the winner's experiment, not fail."""
    import mlflow

    from artsim_pipeline.resources.mlflow_tracking import MlflowResource

    name = f"race-{uuid.uuid4().hex[:8]}"
    tracking = MlflowResource(tracking_uri=mlflow_server.url)
    lookup = mlflow.MlflowClient.get_experiment_by_name
    calls = []

    def not_yet_then_real(self, experiment_name):
        calls.append(experiment_name)
        if len(calls) == 1:  # the other worker creates it right after this lookup
            mlflow.MlflowClient(mlflow_server.url).create_experiment(experiment_name)
            return None
        return lookup(self, experiment_name)

    monkeypatch.setattr(mlflow.MlflowClient, "get_experiment_by_name", not_yet_then_real)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    with tracking.start_run(name, "second") as run:
        mlflow.log_metric("x", 1.0)
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_server.url  # still there after the run
    monkeypatch.undo()
    client = mlflow.MlflowClient(mlflow_server.url)
    assert client.get_run(run.info.run_id).info.experiment_id == client.get_experiment_by_name(name).experiment_id
