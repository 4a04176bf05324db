"""Dagster instance pieces that keep all instance files inside `$ARTSIM_HOME/dagster/`.

`dagster.yaml` can read an environment variable but not join a path onto it; these thin
subclasses do the join so that run history, compute logs and artefacts never mix with the
asset tables under `$ARTSIM_HOME/storage/`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from dagster import Field, StringSource
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._core.storage.root import LocalArtifactStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage


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
    """Compute logs at `<home>/dagster/compute_logs/`."""

    subdir = ("compute_logs",)


class HomeSqliteStorage(_UnderHome, DagsterSqliteStorage):
    """Run, event-log and schedule storage (SQLite) at `<home>/dagster/`.

    Creating it is serialised between processes by a file lock: on a fresh home two processes
    (two `artsim materialize`, or one beside `make dev`) would otherwise both create the SQLite
    schemas and stamp their versions, and one dies on `table alembic_version already exists`.
    """

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
