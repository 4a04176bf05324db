"""Dagster instance pieces that keep all instance files inside `$ARTSIM_HOME/dagster/`.

`dagster.yaml` can read an environment variable but not join a path onto it; these thin
subclasses do the join so that run history, compute logs and artefacts never mix with the
asset tables under `$ARTSIM_HOME/storage/`.

The SQLite storages are Dagster's own (same files, same schemas; the UI reads them as ever) with
changes to how they connect, which most of the per-run overhead of `artsim materialize` was
(figures: `benchmarks/bench_orchestration.py`):

- one SQLAlchemy engine per database file, its connection kept open between uses, instead of a
  new engine and connection per query (each set up its dialect, compiled every statement again,
  and closing the last connection checkpointed the WAL log and deleted it);
- `synchronous=NORMAL` on every connection: in WAL mode that survives a crash of the process
  intact; only an OS crash or power cut can drop the last commits (the newest run events, whose
  assets are then found missing or stale and run again), instead of an fsync per commit;
- a new run's database copied from an empty one made once per event-log storage object, kept
  with it (`HomeEventLogStorage`; `artsim materialize` and the UI each hold one instance).

The compute logs are Dagster's files, mirrored to the terminal by a thread instead of
subprocesses (`HomeComputeLogManager`).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager

from dagster import DagsterEventType, Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._core.storage.root import LocalArtifactStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)

# engines kept per event-log storage: the index shard and the shards of the runs in progress
MAX_SHARD_ENGINES = 16
RUN_ENDS = frozenset({DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED})


class _UnderHome:
    """Configured with `home: {env: ARTSIM_HOME}`; stores under `<home>/dagster/<subdir>`."""

    subdir: tuple[str, ...] = ()

    @classmethod
    def config_type(cls):
        return {"home": Field(StringSource)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(base_dir=os.path.join(config_value["home"], "dagster", *cls.subdir), inst_data=inst_data)


class HomeArtifactStorage(_UnderHome, LocalArtifactStorage):
    """Local artefact storage at `<home>/dagster/`."""


class HomeComputeLogManager(_UnderHome, LocalComputeLogManager):
    """Compute logs at `<home>/dagster/compute_logs/`, mirrored to the terminal by a thread of
    this process instead of Dagster's two subprocesses per stream and run (a `tail -F` and a
    Python interpreter watching for orphans, which starting took most of a short run's CPU)."""

    subdir = ("compute_logs",)

    @contextmanager
    def capture_logs(self, log_key):
        from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
        from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION
        from dagster._utils import touch_file

        out = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        err = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with mirrored_to_file(sys.stdout, out), mirrored_to_file(sys.stderr, err):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # as Dagster's: the capture is complete


MIRROR_POLL_S = 0.05


@contextmanager
def mirrored_to_file(stream, path: str):
    """What is written to `stream` (its file descriptor, so C code's output too) goes to the file
    `path` for the block (Dagster's `redirect_to_file`), and a thread copies what the file gains to
    where the stream pointed before, as `tail -F` did; all of it, before the block returns."""
    from dagster._core.execution.compute_logs import _fileno, redirect_to_file
    from dagster._utils import ensure_file

    ensure_file(path)
    fd = _fileno(stream)
    if not fd:  # not a file (a test's capture): nothing to mirror to, as Dagster's
        with redirect_to_file(stream, path):
            yield
        return
    terminal = os.dup(fd)
    done = threading.Event()
    with open(path, "rb") as log:
        log.seek(0, os.SEEK_END)

        def copy() -> None:
            while True:
                chunk = log.read(1 << 16)
                if chunk:
                    try:
                        os.write(terminal, chunk)
                    except OSError:  # the terminal went away: the file still has it all
                        return
                elif done.is_set():
                    return
                else:
                    done.wait(MIRROR_POLL_S)

        copier = threading.Thread(target=copy, name=f"artsim-mirror-{os.path.basename(path)}", daemon=True)
        copier.start()
        try:
            with redirect_to_file(stream, path):
                yield
        finally:
            done.set()
            copier.join()
            os.close(terminal)


def sqlite_engine(conn_string: str):
    """An engine for one SQLite file of the instance that keeps its connection open between uses
    (Dagster's opens and closes one per query, and closing the last connection to a WAL database
    checkpoints it and deletes its log, which the next write creates again), each connection
    with `synchronous=NORMAL` (see the module docstring)."""
    import sqlalchemy as db
    from sqlalchemy.pool import QueuePool

    engine = db.create_engine(conn_string, poolclass=QueuePool, pool_size=1, max_overflow=8,
                              connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})

    @db.event.listens_for(engine, "connect")
    def _no_fsync_per_commit(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        # WAL is what Dagster sets once the schema is made: here before it, so that a new run's
        # database is not made in rollback-journal mode, two fsyncs per table and index
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


# every storage with open engines: their connections are closed at exit (each database's log
# checkpointed into it, as Dagster's own leave them) and dropped, not closed, in a forked child
_WITH_ENGINES: weakref.WeakSet = weakref.WeakSet()
_ENGINE_LOCK = threading.Lock()


@atexit.register
def _close_engines_at_exit() -> None:
    for storage in list(_WITH_ENGINES):
        storage.close_engines()


def _forget_engines_in_child() -> None:
    for storage in list(_WITH_ENGINES):
        storage.close_engines(close=False)


os.register_at_fork(after_in_child=_forget_engines_in_child)


class _OneEngine:
    """`connect()` through one engine, made on first use, instead of a new one per call."""

    _conn_string: str

    @contextmanager
    def connect(self):
        engine = self.__dict__.get("_engine")
        if engine is None:
            with _ENGINE_LOCK:
                engine = self.__dict__.setdefault("_engine", sqlite_engine(self._conn_string))
                _WITH_ENGINES.add(self)
        with engine.connect() as conn:
            with conn.begin():
                yield conn

    def close_engines(self, close: bool = True) -> None:
        engine = self.__dict__.pop("_engine", None)
        if engine is not None:
            engine.dispose(close=close)

    def dispose(self) -> None:
        self.close_engines()
        super().dispose()


class HomeRunStorage(_OneEngine, SqliteRunStorage):
    """Dagster's SQLite run storage (`history/runs.db`) through one engine."""


class HomeScheduleStorage(_OneEngine, SqliteScheduleStorage):
    """Dagster's SQLite schedule storage (`schedules/schedules.db`) through one engine."""


class HomeEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log (an index shard and one shard per run, `history/runs/`) through
    one engine per shard, the most recently used `MAX_SHARD_ENGINES` kept."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict = OrderedDict()
        super().__init__(base_dir, inst_data)

    def _initdb(self, engine, for_index_shard: bool = False) -> None:
        """A new run's database as a copy of an empty one made once per storage object (cached on
        it, not per process: each `DagsterInstance` made anew makes it again) by Dagster's own
        `_initdb` (its schema, indexes and alembic stamp, in WAL mode): setting up the schema and
        checking the migration history took most of a short run's overhead. An existing file, the
        index shard, or a copy that loses a race to another process is left to Dagster's."""
        path = engine.url.database
        if not for_index_shard and path and not os.path.exists(path) and self._copy_empty_shard(path):
            return
        super()._initdb(engine, for_index_shard=for_index_shard)

    def _copy_empty_shard(self, path: str) -> bool:
        empty = self.__dict__.get("_empty_shard")
        if empty is None:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="artsim-shard-") as folder:
                template = os.path.join(folder, "empty.db")
                engine = sqlite_engine(f"sqlite:///{template}")
                super()._initdb(engine)
                engine.dispose()  # closing the last connection checkpoints the log into the file
                with open(template, "rb") as fh:
                    empty = self.__dict__.setdefault("_empty_shard", fh.read())
        # written beside it under a name no reader lists, then linked: a reader never sees half a file
        partial = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.new")
        with open(partial, "wb") as fh:
            fh.write(empty)
        try:
            os.link(partial, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(partial)
        return True

    def _engine(self, shard: str):
        engine = self._engines.pop(shard, None) or sqlite_engine(self.conn_string_for_shard(shard))
        self._engines[shard] = engine
        _WITH_ENGINES.add(self)
        while len(self._engines) > MAX_SHARD_ENGINES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str):
        with self._db_lock:  # as Dagster's: one connection at a time per storage
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    def store_event(self, event) -> None:
        super().store_event(event)
        # The UI follows a run by watching its database file for changes, which the open
        # connection's writes leave in the log beside it (Dagster's own closed it, which copied
        # them in): a new modification time is such a change.
        try:
            os.utime(self.path_for_shard(event.run_id))
        except FileNotFoundError:
            pass
        if event.is_dagster_event and event.dagster_event_type in RUN_ENDS:
            with self._db_lock:  # a finished run's database closed: its log checkpointed into it
                engine = self._engines.pop(event.run_id, None)
            if engine is not None:
                engine.dispose()

    def close_engines(self, close: bool = True) -> None:
        engines, self._engines = self._engines, OrderedDict()
        for engine in engines.values():
            engine.dispose(close=close)

    def dispose(self) -> None:
        with self._db_lock:
            self.close_engines()
        super().dispose()


class HomeSqliteStorage(DagsterSqliteStorage):
    """Run, event-log and schedule storage (SQLite) at `<home>/dagster/`.

    Creating it is serialised between processes by a file lock: on a fresh home two processes
    (two `artsim materialize`, or one beside `make dev`) would otherwise both create the SQLite
    schemas and stamp their versions, and one dies on `table alembic_version already exists`.
    """

    def __init__(self, base_dir: str, inst_data=None):
        # DagsterSqliteStorage's own, with the storages above
        self.base_dir = base_dir
        self._run_storage = HomeRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = HomeEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = HomeScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def config_type(cls):
        return {"home": Field(StringSource)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        base_dir = os.path.join(config_value["home"], "dagster")
        with exclusive_file_lock(os.path.join(base_dir, ".storage-init.lock")):
            return cls(base_dir=base_dir, inst_data=inst_data)


@contextmanager
def exclusive_file_lock(path: str):
    """An exclusive `flock` on `path` (created with its directory) for the duration of the block."""
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
