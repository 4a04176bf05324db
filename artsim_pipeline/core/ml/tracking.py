"""MLflow helpers for the training assets (mlflow is imported inside the functions).

Typical use inside an asset::

    with start_run("artsim-similarity", run_name="similarity_model", tags={...},
                   tracking_uri=uri) as run:
        log_params_flat({"train": config.to_dict(), "data": {...}})
        log_history(result.history)                 # per-epoch metrics, step = epoch
        log_metrics_flat(test_metrics, prefix="test_")
        log_figure_files([recall_png, hist_png])
        info = log_torch_model(result.head, X[:4], registered_model_name="artsim-similarity-head")
        url = run_url(uri, run.info.experiment_id, run.info.run_id)

`start_run` always ends the run: FINISHED on success, FAILED when the block raises (the exception
propagates). A new experiment on a local store gets its artifacts beside the store
(``<dir of mlflow.db>/artifacts/<experiment>``), never under the current directory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

MAX_PARAM_LENGTH = 6000  # MLflow's limit on one param value
LOCAL_UI = "http://127.0.0.1:5000"  # `make dev` serves the MLflow UI here


def default_artifact_location(tracking_uri: str | None, experiment: str) -> str | None:
    """``file://<dir of the SQLite db>/artifacts/<experiment>`` for a local SQLite store, else None."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    # sqlite:///rel.db is relative to the cwd, sqlite:////abs/x.db is absolute (SQLAlchemy).
    db_path = Path(unquote(tracking_uri[len("sqlite:///") :].split("?", 1)[0]))
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in experiment)
    return (db_path.parent.absolute() / "artifacts" / safe).as_uri()


def ensure_experiment(name: str, artifact_location: str | None = None) -> str:
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
def _tracking(uri: str | None) -> Iterator[None]:
    if uri is None:
        yield
        return
    import mlflow

    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # pragma: no cover - private helper moved: set without restoring
        mlflow.set_tracking_uri(uri)
        yield
        return
    with _use_tracking_uri(uri):
        yield


@contextmanager
def start_run(
    experiment: str,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    *,
    tracking_uri: str | None = None,
    artifact_location: str | None = None,
    description: str | None = None,
):
    """Context manager: an MLflow run in `experiment` (created if missing); yields the ActiveRun.

    With `tracking_uri`, that store is used inside the block and the previous tracking URI is
    restored afterwards. The run ends FINISHED, or FAILED if the block raises.
    """
    import mlflow

    with _tracking(tracking_uri):
        experiment_id = ensure_experiment(experiment, artifact_location)
        clean_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        run = mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, tags=clean_tags, description=description
        )
        try:
            yield run
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        else:
            mlflow.end_run(status="FINISHED")


def flatten(params: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, str]:
    """Nested mapping -> {"a.b": "value"}; lists/tuples become JSON; values cut to MLflow's limit."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
            continue
        if isinstance(value, (list, tuple, set)):
            text = json.dumps(list(value), default=str)
        else:
            text = str(value)
        out[name] = text[:MAX_PARAM_LENGTH]
    return out


def log_params_flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Log a (nested) dict as params of the active run; returns what was logged."""
    import mlflow

    flat = flatten(params, prefix)
    items = list(flat.items())
    for start in range(0, len(items), 100):  # log_batch takes at most 100 params
        mlflow.log_params(dict(items[start : start + 100]))
    return flat


def _require_run():
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run: use start_run(...) first")
    return run


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:
        import numpy as np

        if isinstance(value, np.generic) and np.issubdtype(type(value), np.number):
            return float(value)
    except ImportError:  # pragma: no cover
        pass
    return None


def log_metrics_flat(metrics: Mapping[str, Any], prefix: str = "", step: int | None = None) -> dict[str, float]:
    """Log the numeric values of `metrics` (others are skipped) under `prefix`; returns them."""
    import mlflow

    numeric = {}
    for key, value in metrics.items():
        number = _numeric(value)
        if number is not None:
            numeric[f"{prefix}{key}"] = number
    if numeric:
        mlflow.log_metrics(numeric, step=step)
    return numeric


def log_history(
    history: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    step_key: str = "epoch",
    prefix: str = "",
) -> int:
    """Per-epoch metrics with ``step = row[step_key]`` (rows, or columns of equal length).

    Non-numeric values and None are skipped; NaN/inf are logged as is. Returns #values logged.
    """
    import time

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
            if key == step_key:
                continue
            number = _numeric(value)
            if number is None:
                continue
            metrics.append(Metric(f"{prefix}{key}", number, timestamp, step))
    client = mlflow.MlflowClient()
    for start in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[start : start + 1000])
    return len(metrics)


def log_figure_files(paths: Iterable[str | Path], artifact_path: str = "figures") -> list[str]:
    """Log existing files (PNG figures, JSON reports) as artifacts; returns their artifact paths."""
    import mlflow

    _require_run()
    logged = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"figure {path} does not exist")
        mlflow.log_artifact(str(path), artifact_path=artifact_path)
        logged.append(f"{artifact_path}/{path.name}" if artifact_path else path.name)
    return logged


def log_torch_model(
    model,
    input_example,
    registered_model_name: str | None = None,
    name: str = "model",
    pip_requirements: Sequence[str] | None = None,
    await_registration_for: int = 60,
    serialization_format: str = "pt2",
):
    """Log a torch module with a signature inferred from ``model(input_example)`` and register it.

    `input_example`: float32 numpy [k >= 2, d]. ``serialization_format="pt2"`` (MLflow's default
    outside Databricks) stores a `torch.export` graph with a dynamic batch dimension: loading it
    needs neither artsim's code nor unpickling, but export takes a few seconds; ``"pickle"`` is
    fast and needs ``artsim_pipeline`` importable to load. Requirements default to the running
    torch version (skips MLflow's slow requirement inference). Returns MLflow's ModelInfo
    (``.model_uri``, ``.registered_model_version``).
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
        signature = infer_signature(example, output)
        return mlflow.pytorch.log_model(
            model,
            name=name,
            signature=signature,
            input_example=example,
            registered_model_name=registered_model_name,
            pip_requirements=requirements,
            await_registration_for=await_registration_for,
            serialization_format=serialization_format,
        )
    finally:
        model.train(was_training)


def run_url(tracking_uri: str | None, experiment_id: str, run_id: str, ui_url: str | None = None) -> str:
    """Link to the run in the MLflow UI: the tracking server itself when it is http(s), else
    `ui_url` (default: the local UI that `make dev` starts, http://127.0.0.1:5000)."""
    base = ui_url
    if base is None:
        base = tracking_uri if tracking_uri and tracking_uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def finite_or_raise(metrics: Mapping[str, Any]) -> None:
    """Raise if any numeric metric is NaN/inf (call before logging headline metrics)."""
    bad = [k for k, v in metrics.items() if (n := _numeric(v)) is not None and not math.isfinite(n)]
    if bad:
        raise ValueError(f"non-finite metrics: {bad}")
