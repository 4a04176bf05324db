"""artsim's code location for a Celery cluster: the definitions of `ARTSIM_ENV` (`prod`: tables
and files on S3, the MLflow server) with `celery_executor` as the executor of every job, so each
step of a run (an embedding chunk, the training, the index ...) is a Celery task that any worker
can take.

The executor is configured from `celery.yaml` beside this file, the same file the workers start
with (`dagster-celery worker start -A dagster_celery.app -y deploy/celery/celery.yaml`), so the
broker and the result backend are named once, through `ARTSIM_CELERY_BROKER_URL` and
`ARTSIM_CELERY_BACKEND_URL`.

Serve it like the default code location, e.g.
`dagster-webserver -f deploy/celery/celery_definitions.py` and
`dagster-daemon run -f deploy/celery/celery_definitions.py` (deploy/README.md, "Celery executor").
Every worker loads this file too (by the path the run recorded), so the workers need the same
checkout and installed package at the same path, and the same environment variables as the
webserver and daemon, but no directory shared with them.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from dagster import Definitions
from dagster_celery import celery_executor

from artsim_pipeline.definitions import build_defs

CELERY_YAML = Path(__file__).with_name("celery.yaml")


def executor_config(path: Path = CELERY_YAML) -> dict:
    """The `execution: config:` block of `celery.yaml` (env references unresolved)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))["execution"]["config"]


defs = Definitions.merge(build_defs(), Definitions(executor=celery_executor.configured(executor_config(), name="artsim_celery")))
