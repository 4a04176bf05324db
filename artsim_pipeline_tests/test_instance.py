"""The instance `dagster.yaml` builds (`artsim_pipeline/instance.py`): Dagster's SQLite files,
written through reused connections, and read by Dagster's own storage (the UI's) as ever."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DataVersion, Output, asset, materialize, mem_io_manager

REPO = Path(__file__).resolve().parents[1]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@asset
def counted() -> Output[int]:
    return Output(3, data_version=DataVersion("3"))


@asset
def doubled(counted: int) -> int:
    return 2 * counted


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("ARTSIM_HOME", str(home))
    return home


def home_instance() -> DagsterInstance:
    """The instance of the repo's dagster.yaml over $ARTSIM_HOME (what `artsim materialize` uses)."""
    return DagsterInstance.from_config(str(REPO))


def dagsters_own_instance(home: Path, folder: Path) -> DagsterInstance:
    """Dagster's stock SQLite storage over the same files: what reads them without our classes."""
    folder.mkdir()
    (folder / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home / 'dagster'}\ntelemetry:\n  enabled: false\n")
    return DagsterInstance.from_config(str(folder))


def run_twice(instance: DagsterInstance) -> list[str]:
    ids = []
    for _ in range(2):
        result = materialize([counted, doubled], instance=instance, resources={"io_manager": mem_io_manager}, run_config=QUIET)
        assert result.success
        ids.append(result.run_id)
    return ids


def test_runs_written_through_the_home_instance_are_read_by_dagsters_own_storage(home, tmp_path):
    from artsim_pipeline.instance import HomeEventLogStorage, HomeRunStorage

    instance = home_instance()
    assert isinstance(instance.run_storage, HomeRunStorage) and isinstance(instance.event_log_storage, HomeEventLogStorage)
    ids = run_twice(instance)
    instance.dispose()

    reader = dagsters_own_instance(home, tmp_path / "stock")
    assert type(reader.event_log_storage).__name__ == "SqliteEventLogStorage"
    runs = {r.run_id: r for r in reader.get_runs()}
    assert set(runs) == set(ids) and all(r.is_success for r in runs.values())
    for run_id in ids:
        kinds = [e.dagster_event.event_type for e in reader.all_logs(run_id) if e.is_dagster_event]
        assert kinds.count(DagsterEventType.STEP_SUCCESS) == 2 and kinds[-1] == DagsterEventType.RUN_SUCCESS
        assert kinds.count(DagsterEventType.ASSET_MATERIALIZATION) == 2
    materialized = reader.fetch_materializations(AssetKey("counted"), limit=10).records
    assert [r.run_id for r in materialized] == ids[::-1]
    assert reader.get_latest_data_version_record(AssetKey("counted")).asset_materialization.tags["dagster/data_version"] == "3"


def test_a_new_runs_database_is_the_one_dagster_makes(home, tmp_path):
    """Copied from an empty one made once per process: the same tables, indexes and alembic
    revision as Dagster's own, in WAL mode; the finished run's log is checkpointed into it."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    instance = home_instance()
    ids = run_twice(instance)
    assert instance.event_log_storage.__dict__.get("_empty_shard")  # the runs' databases were copies
    stock = SqliteEventLogStorage(str(tmp_path / "stock"))
    with stock.run_connection("fresh"):
        pass

    def schema(path: Path) -> tuple:
        with closing(sqlite3.connect(path)) as db:
            return (sorted(db.execute("SELECT type, name, sql FROM sqlite_master").fetchall(), key=str),
                    db.execute("SELECT version_num FROM alembic_version").fetchall(),
                    db.execute("PRAGMA journal_mode").fetchone())

    runs = home / "dagster" / "history" / "runs"
    assert not [p.name for p in runs.iterdir() if p.name.startswith(tuple(ids)) and p.name.endswith("-wal")]
    assert not [p.name for p in runs.iterdir() if p.name.startswith(".")]  # no partial copy left behind
    assert all(schema(runs / f"{run_id}.db") == schema(tmp_path / "stock" / "fresh.db") for run_id in ids)
    assert schema(runs / f"{ids[0]}.db")[2] == ("wal",)


def test_connections_skip_the_fsync_per_commit_and_are_reused(home):
    from artsim_pipeline.instance import HomeEventLogStorage

    instance = home_instance()
    run_twice(instance)
    storage = instance.event_log_storage
    assert isinstance(storage, HomeEventLogStorage)
    with storage.index_connection() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    engine = storage._engines["index"]
    with storage.index_connection():
        pass
    assert storage._engines["index"] is engine
    with instance.run_storage.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1


WRITER = textwrap.dedent(
    """
    import sys
    from dagster import DagsterInstance, asset, materialize, mem_io_manager

    @asset(name=sys.argv[1])
    def one() -> int:
        return 1

    instance = DagsterInstance.from_config(sys.argv[2])
    for _ in range(int(sys.argv[3])):
        assert materialize([one], instance=instance, resources={"io_manager": mem_io_manager},
                           run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}}).success
    """
)


def test_two_processes_write_runs_into_one_home_at_once(home, tmp_path):
    """Held connections take no lock between uses: two writers (a CLI run beside the UI's
    launches) each record every run."""
    home_instance().dispose()  # the schemas, made once
    env = {**os.environ, "ARTSIM_HOME": str(home), "PYTHONPATH": str(REPO)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, name, str(REPO), "6"], env=env, stderr=subprocess.PIPE, text=True)
               for name in ("left", "right")]
    for writer in writers:
        assert writer.wait(timeout=240) == 0, writer.stderr.read()
    reader = dagsters_own_instance(home, tmp_path / "stock")
    runs = reader.get_runs()
    assert len(runs) == 12 and all(r.is_success for r in runs)
    for key in ("left", "right"):
        assert len(reader.fetch_materializations(AssetKey(key), limit=20).records) == 6


def test_the_ui_following_a_run_sees_each_event_as_it_is_stored(home, tmp_path):
    """The UI follows a run in progress by watching its database file (Dagster's watchdog on
    `<run id>.db`): events written through the held connection must show there before the run ends."""
    import threading
    import time

    from dagster._core.events.log import EventLogEntry
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    writer = home_instance().event_log_storage
    run_id = "0f6a2b8e-live-run"

    def message(text: str) -> EventLogEntry:
        return EventLogEntry(error_info=None, level=20, user_message=text, run_id=run_id, timestamp=time.time())

    writer.store_event(message("started"))
    ui = SqliteEventLogStorage(str(home / "dagster" / "history" / "runs"))
    seen: list[str] = []
    arrived = threading.Event()

    def on_event(entry, _cursor):
        seen.append(entry.user_message)
        if entry.user_message == "step 2":
            arrived.set()

    ui.watch(run_id, None, on_event)
    try:
        time.sleep(0.5)  # the observer running
        writer.store_event(message("step 1"))
        writer.store_event(message("step 2"))
        assert arrived.wait(10), f"the watcher saw only {seen}"
    finally:
        ui.end_watch(run_id, on_event)
        ui.dispose()
    assert seen[-2:] == ["step 1", "step 2"]


CAPTURING = textwrap.dedent(
    """
    import os, subprocess, sys
    from artsim_pipeline.instance import HomeComputeLogManager

    spawned = []
    original = subprocess.Popen.__init__
    def popen(self, *args, **kwargs):
        spawned.append(args[0])
        original(self, *args, **kwargs)
    subprocess.Popen.__init__ = popen
    manager = HomeComputeLogManager(sys.argv[1])
    with manager.capture_logs(["run", "step"]):
        print("from python")
        os.write(2, b"from the descriptor\\n")
        print("x" * 200000)  # the last, and long: all of it before the block returns
    print(f"spawned {len(spawned)}", flush=True)
    """
)


def test_compute_logs_go_to_their_files_and_the_terminal_without_subprocesses(tmp_path):
    done = subprocess.run([sys.executable, "-c", CAPTURING, str(tmp_path / "logs")], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["from python", "x" * 200000, "spawned 0"]
    assert done.stderr.splitlines()[-1:] == ["from the descriptor"]
    files = {p.suffix: p.read_text() for p in (tmp_path / "logs" / "run").iterdir() if p.suffix in (".out", ".err")}
    assert files == {".out": f"from python\n{'x' * 200000}\n", ".err": "from the descriptor\n"}
    assert (tmp_path / "logs" / "run" / "step.complete").exists()


def test_a_materialize_through_the_home_instance_is_followed_live_with_engines_reused_and_no_log_subprocess(home, monkeypatch):
    """A real `materialize` with dagster.yaml's instance: a watcher on this project's event-log
    storage (the UI's, with dagster.yaml) sees the run's events while the asset still runs (our
    `store_event` touches the file); the run's queries go through engines made once per database
    (our `_connect`), not one per query; its compute logs go through our capture, which starts
    no subprocess. Each fails if Dagster stopped calling the override it rests on."""
    import threading

    import sqlalchemy

    from artsim_pipeline import instance as artsim_instance
    from artsim_pipeline.instance import HomeComputeLogManager, HomeEventLogStorage

    instance = home_instance()
    # a first run before counting: the storages' schemas, the index shard, the empty run database
    assert materialize([counted], instance=instance, resources={"io_manager": mem_io_manager}, run_config=QUIET).success
    watcher = HomeEventLogStorage(str(home / "dagster" / "history" / "runs"))
    live: dict[str, object] = {}
    seen_marker = threading.Event()

    def on_event(entry, _cursor):
        if entry.user_message == "marker: the asset still runs":
            seen_marker.set()

    @asset
    def followed(context) -> int:
        live["run_id"] = context.run_id
        watcher.watch(context.run_id, None, on_event)
        time.sleep(0.5)  # the observer running
        context.log.info("marker: the asset still runs")
        live["seen_while_running"] = seen_marker.wait(10)
        print("to the compute log")
        return 1

    created, ours, spawned, captured = [], [], [], []
    real_create, real_engine, real_capture = sqlalchemy.create_engine, artsim_instance.sqlite_engine, HomeComputeLogManager.capture_logs
    real_popen = subprocess.Popen.__init__
    monkeypatch.setattr(sqlalchemy, "create_engine", lambda url, *a, **k: created.append(str(url)) or real_create(url, *a, **k))
    monkeypatch.setattr(artsim_instance, "sqlite_engine", lambda url: ours.append(url) or real_engine(url))
    monkeypatch.setattr(subprocess.Popen, "__init__", lambda self, *a, **k: spawned.append(a[:1]) or real_popen(self, *a, **k))
    real_engine_of = HomeEventLogStorage._engine
    runs_engines = []  # (storage, shard) of each engine made, by the run's storage or the watcher's

    def engine_of(self, shard):
        if shard not in self._engines:
            runs_engines.append((self, shard))
        return real_engine_of(self, shard)

    monkeypatch.setattr(HomeEventLogStorage, "_engine", engine_of)
    monkeypatch.setattr(HomeComputeLogManager, "capture_logs", lambda self, key: captured.append(key) or real_capture(self, key))
    try:
        result = materialize([followed], instance=instance, resources={"io_manager": mem_io_manager}, run_config=QUIET)
        during_run = (list(created), list(ours), list(runs_engines), list(spawned))
    finally:
        if "run_id" in live:
            watcher.end_watch(live["run_id"], on_event)
        watcher.dispose()
    assert result.success and live["seen_while_running"] is True
    engines, engines_of_ours, engines_by_storage, subprocesses = during_run
    assert len(instance.all_logs(result.run_id)) >= 10
    # every engine made while the run was in progress is ours; the run's storage made one, for its
    # database, used for all of the run's events
    assert engines == engines_of_ours and all(url.endswith(f"{result.run_id}.db") for url in engines), engines
    assert [shard for storage, shard in engines_by_storage if storage is instance.event_log_storage] == [result.run_id]
    assert captured and subprocesses == []
