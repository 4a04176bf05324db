"""Where MLflow runs are tracked: a local SQLite store by default, or any tracking server."""

import os
from contextlib import contextmanager
from typing import Optional

from dagster import ConfigurableResource
from pydantic import Field

from artsim_pipeline.resources.config import MergingConfig


class MlflowResource(MergingConfig, ConfigurableResource):
    """Tracking URI, experiment names and the registered model name. mlflow is imported lazily."""

    tracking_uri: str = Field(description="sqlite:///... (default under $ARTSIM_HOME/mlflow) or http(s)://server")
    artifact_location: Optional[str] = Field(default=None, description="artifact root for experiments created here")
    similarity_experiment: str = "artsim-similarity"
    classifier_experiment: str = "artsim-classifiers"
    registered_model_name: str = "artsim-similarity-head"
    ui_url: str = Field(default="http://127.0.0.1:5000", description="the MLflow UI people open (make dev)")

    def run_url(self, experiment_id: str, run_id: str) -> str:
        base = self.tracking_uri if self.tracking_uri.startswith(("http://", "https://")) else self.ui_url
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    @contextmanager
    def start_run(self, experiment: str, run_name: str, tags: dict | None = None):
        from artsim_pipeline.core.ml.tracking import start_run

        location = f"{self.artifact_location.rstrip('/')}/{experiment}" if self.artifact_location else None
        # MLflow's temporary tracking URI, when it is restored, deletes MLFLOW_TRACKING_URI from
        # os.environ; put it back, or the next `build_defs` in this process (a Celery worker, a
        # code server, `artsim materialize`) no longer sees the tracking server it was given.
        saved = os.environ.get("MLFLOW_TRACKING_URI")
        try:
            with start_run(experiment, run_name, tags, tracking_uri=self.tracking_uri, artifact_location=location) as run:
                yield run
        finally:
            if saved is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = saved
