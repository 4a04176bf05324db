"""Where MLflow runs are tracked (a local SQLite store by default, or any tracking server), and
the only module that talks to MLflow (mlflow is imported inside the methods).

Inside an asset::

    with mlflow_tracking.start_run(mlflow_tracking.similarity_experiment, "similarity-1234", {...}) as run:
        mlflow_tracking.log_params({"train": config.to_dict(), "data": {...}})
        mlflow_tracking.log_history(result.history)          # per-epoch metrics, step = epoch
        mlflow_tracking.log_metrics(test_metrics, prefix="test_")
        mlflow_tracking.log_png(png_bytes, "figures/recall_at_k.png")
        info = mlflow_tracking.log_torch_model(result.head, X[:4])  # registered as `registered_model_name`
    url = mlflow_tracking.run_url(run.info.experiment_id, run.info.run_id)

`start_run` always ends the run: FINISHED on success, FAILED when the block raises (the exception
propagates), and restores the tracking URI the process had. A new experiment on a local store
gets its artifacts beside the store (``<dir of mlflow.db>/artifacts/<experiment>``), never under
the current directory. `log_to_run` adds to a run that has already ended (the evaluation logs
into the model's run).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote

from dagster import ConfigurableResource
from pydantic import Field

from artsim_pipeline import settings
from artsim_pipeline.resources.config import MergingConfig

MAX_PARAM_LENGTH = 6000  # MLflow's limit on one param value


class MlflowResource(MergingConfig, ConfigurableResource):
    """Tracking URI, experiment names and the registered model name."""

    tracking_uri: str = Field(description="sqlite:///... (default under $ARTSIM_HOME/mlflow) or http(s)://server")
    artifact_location: Optional[str] = Field(default=None, description="artifact root for experiments created here")
    similarity_experiment: str = "artsim-similarity"
    classifier_experiment: str = "artsim-classifiers"
    registered_model_name: str = "artsim-similarity-head"
    ui_url: str = Field(default="http://127.0.0.1:5000", description="the MLflow UI people open (make dev)")

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """Link to the run in the MLflow UI: the tracking server itself when it is http(s), else
        `ui_url` (the local UI that `make dev` starts)."""
        base = self.tracking_uri if self.tracking_uri.startswith(("http://", "https://")) else self.ui_url
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def _client(self):
        import mlflow

        # a client bound to our store: no global MLflow state is changed in the calling process
        return mlflow.MlflowClient(self.tracking_uri)

    # -- a run -----------------------------------------------------------------------------------

    @contextmanager
    def start_run(self, experiment: str, run_name: str | None = None, tags: Mapping[str, Any] | None = None):
        """An MLflow run in `experiment` (created if missing) on this store; yields the ActiveRun."""
        import mlflow

        location = f"{self.artifact_location.rstrip('/')}/{experiment}" if self.artifact_location else None
        # MLflow's temporary tracking URI, when it is restored, deletes MLFLOW_TRACKING_URI from
        # os.environ; put it back, or the next `build_defs` in this process (a Celery worker, a
        # code server, `artsim materialize`) no longer sees the tracking server it was given.
        with settings.preserved("MLFLOW_TRACKING_URI"), _tracking(self.tracking_uri):
            experiment_id = _ensure_experiment(experiment, location)
            clean_tags = {str(k): str(v) for k, v in (tags or {}).items()}
            run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=clean_tags)
            try:
                yield run
            except BaseException:
                mlflow.end_run(status="FAILED")
                raise
            else:
                mlflow.end_run(status="FINISHED")

    # -- on the active run (inside start_run) ----------------------------------------------------

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
        """Log a (nested) dict as params; returns what was logged (`flatten`)."""
        import mlflow

        flat = flatten(params, prefix)
        items = list(flat.items())
        for start in range(0, len(items), 100):  # log_batch takes at most 100 params
            mlflow.log_params(dict(items[start: start + 100]))
        return flat

    def log_metrics(self, metrics: Mapping[str, Any], prefix: str = "", step: int | None = None) -> dict[str, float]:
        """Log the numeric values of `metrics` (others are skipped) under `prefix`; returns them."""
        import mlflow

        numeric = {f"{prefix}{key}": number for key, value in metrics.items() if (number := _numeric(value)) is not None}
        if numeric:
            mlflow.log_metrics(numeric, step=step)
        return numeric

    def log_history(self, history: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
                    step_key: str = "epoch", prefix: str = "") -> int:
        """Per-epoch metrics with ``step = row[step_key]`` (rows, or columns of equal length).
        Non-numeric values and None are skipped; NaN/inf are logged as is. Returns #values logged."""
        import mlflow
        from mlflow.entities import Metric

        run = _require_run()
        if isinstance(history, Mapping):
            columns = {k: list(v) for k, v in history.items()}
            lengths = {len(v) for v in columns.values()}
            if len(lengths) > 1:
                raise ValueError(f"history columns differ in length: {sorted(lengths)}")
            n = lengths.pop() if lengths else 0
            rows = [{k: v[i] for k, v in columns.items()} for i in range(n)]
        else:
            rows = list(history)
        timestamp = int(time.time() * 1000)
        metrics = []
        for i, row in enumerate(rows):
            step = int(row[step_key]) if step_key in row else i
            for key, value in row.items():
                if key != step_key and (number := _numeric(value)) is not None:
                    metrics.append(Metric(f"{prefix}{key}", number, timestamp, step))
        client = mlflow.MlflowClient()
        for start in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[start: start + 1000])
        return len(metrics)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        import mlflow

        _require_run()
        mlflow.log_dict(data, artifact_file)

    def log_files(self, paths: Iterable[str | os.PathLike[str]], artifact_path: str = "figures") -> list[str]:
        """Log existing files (figures, reports) as artifacts; returns their artifact paths."""
        import mlflow

        _require_run()
        logged = []
        for path in map(Path, paths):
            if not path.is_file():
                raise FileNotFoundError(f"figure {path} does not exist")
            mlflow.log_artifact(str(path), artifact_path=artifact_path)
            logged.append(f"{artifact_path}/{path.name}" if artifact_path else path.name)
        return logged

    def log_png(self, png: bytes, artifact_file: str) -> str:
        """A figure rendered in memory (PNG bytes) as the artifact `artifact_file` (`dir/name.png`)."""
        folder, _, name = artifact_file.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(png)
            return self.log_files([path], artifact_path=folder)[0]

    def log_torch_model(self, model, input_example, *, register: bool = True, name: str = "model",
                        pip_requirements: Sequence[str] | None = None, await_registration_for: int = 60,
                        serialization_format: str = "pt2"):
        """Log a torch module with a signature inferred from ``model(input_example)`` and, with
        `register`, register it as `registered_model_name`.

        `input_example`: float32 numpy [k >= 2, d]. ``serialization_format="pt2"`` (MLflow's
        default outside Databricks) stores a `torch.export` graph with a dynamic batch dimension:
        loading it needs neither artsim's code nor unpickling, but export takes a few seconds;
        ``"pickle"`` is fast and needs ``artsim_pipeline`` importable to load. Requirements default
        to the running torch version (skips MLflow's slow requirement inference). Returns MLflow's
        ModelInfo (``.model_uri``, ``.registered_model_version``).
        """
        import mlflow
        import mlflow.pytorch
        import numpy as np
        import torch
        from mlflow.models import infer_signature

        _require_run()
        example = np.ascontiguousarray(np.asarray(input_example, dtype=np.float32))
        if example.ndim != 2 or example.shape[0] < 2:
            # torch.export specialises a batch dimension of size 1; two rows keep it dynamic.
            raise ValueError(f"input_example must be a 2-D array with >= 2 rows, got shape {example.shape}")
        requirements = list(pip_requirements) if pip_requirements else [f"torch=={torch.__version__.split('+')[0]}"]
        was_training = model.training
        model.eval()  # exported / pickled in eval mode (no dropout)
        try:
            try:
                device = next(model.parameters()).device
            except StopIteration:
                device = torch.device("cpu")
            with torch.inference_mode():
                output = model(torch.from_numpy(example).to(device)).float().cpu().numpy()
            return mlflow.pytorch.log_model(
                model, name=name, signature=infer_signature(example, output), input_example=example,
                registered_model_name=self.registered_model_name if register else None, pip_requirements=requirements,
                await_registration_for=await_registration_for, serialization_format=serialization_format,
            )
        finally:
            model.train(was_training)

    # -- on a run that has ended ------------------------------------------------------------------

    def log_to_run(self, run_id: str, *, metrics: Mapping[str, float] | None = None, tags: Mapping[str, str] | None = None,
                   pngs: Mapping[str, bytes] | None = None, tables: Mapping[str, Any] | None = None) -> None:
        """Add metrics, tags, figures (``{"dir/name.png": bytes}``) and tables (``{"dir/name.json":
        pandas frame}``) to a run, finished or not."""
        client = self._client()
        for key, value in (metrics or {}).items():
            client.log_metric(run_id, key, float(value))
        for key, value in (tags or {}).items():
            client.set_tag(run_id, key, value)
        with tempfile.TemporaryDirectory() as tmp:
            for artifact_file, png in (pngs or {}).items():
                folder, _, name = artifact_file.rpartition("/")
                (Path(tmp) / name).write_bytes(png)
                client.log_artifact(run_id, str(Path(tmp) / name), folder or None)
        for artifact_file, frame in (tables or {}).items():
            client.log_table(run_id, frame, artifact_file)

    def registered_versions(self) -> list[tuple[int, str]]:
        """(version, run id) of every registered version of `registered_model_name`."""
        versions = self._client().search_model_versions(f"name='{self.registered_model_name}'")
        return [(int(v.version), v.run_id) for v in versions]


# -- helpers -------------------------------------------------------------------------------------


def default_artifact_location(tracking_uri: str | None, experiment: str) -> str | None:
    """``file://<dir of the SQLite db>/artifacts/<experiment>`` for a local SQLite store, else None."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    # sqlite:///rel.db is relative to the cwd, sqlite:////abs/x.db is absolute (SQLAlchemy).
    db_path = Path(unquote(tracking_uri[len("sqlite:///"):].split("?", 1)[0]))
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in experiment)
    return (db_path.parent.absolute() / "artifacts" / safe).as_uri()


def _ensure_experiment(name: str, artifact_location: str | None = None) -> str:
    """Id of experiment `name` in the current tracking store, created (or restored) if needed;
    safe when two steps on two machines (Celery workers) create it at once."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        if artifact_location is None:
            artifact_location = default_artifact_location(mlflow.get_tracking_uri(), name)
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as exc:  # lost the race: the winner's experiment is the one
            experiment = client.get_experiment_by_name(name)
            if exc.error_code != "RESOURCE_ALREADY_EXISTS" or experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


@contextmanager
def _tracking(uri: str) -> Iterator[None]:
    import mlflow

    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # pragma: no cover - private helper moved: set without restoring
        mlflow.set_tracking_uri(uri)
        yield
        return
    with _use_tracking_uri(uri):
        yield


def _require_run():
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run: use start_run(...) first")
    return run


def flatten(params: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, str]:
    """Nested mapping -> {"a.b": "value"}; lists/tuples become JSON; values cut to MLflow's limit."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
            continue
        text = json.dumps(list(value), default=str) if isinstance(value, (list, tuple, set)) else str(value)
        out[name] = text[:MAX_PARAM_LENGTH]
    return out


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    import numpy as np

    if isinstance(value, np.generic) and np.issubdtype(type(value), np.number):
        return float(value)
    return None
