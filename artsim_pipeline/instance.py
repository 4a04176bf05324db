"""Dagster instance pieces that keep all instance files inside `$ARTSIM_HOME/dagster/`.

`dagster.yaml` can read an environment variable but not join a path onto it; these thin
subclasses do the join so that run history, compute logs and artefacts never mix with the
asset tables under `$ARTSIM_HOME/storage/`.
"""

from __future__ import annotations

import os

from dagster import Field, StringSource
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._core.storage.root import LocalArtifactStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage


def _instance_dir(home: str, *parts: str) -> str:
    return os.path.join(home, "dagster", *parts)


class HomeArtifactStorage(LocalArtifactStorage):
    """Local artefact storage at `<home>/dagster/`."""

    @classmethod
    def config_type(cls):
        return {"home": Field(StringSource)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(base_dir=_instance_dir(config_value["home"]), inst_data=inst_data)


class HomeComputeLogManager(LocalComputeLogManager):
    """Compute logs at `<home>/dagster/compute_logs/`."""

    @classmethod
    def config_type(cls):
        return {"home": Field(StringSource)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(base_dir=_instance_dir(config_value["home"], "compute_logs"), inst_data=inst_data)


class HomeSqliteStorage(DagsterSqliteStorage):
    """Run, event-log and schedule storage (SQLite) at `<home>/dagster/`."""

    @classmethod
    def config_type(cls):
        return {"home": Field(StringSource)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(base_dir=_instance_dir(config_value["home"]), inst_data=inst_data)
