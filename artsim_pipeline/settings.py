"""Environment settings, read when called (never at import) so tests and `dagster dev` can set them late."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from artsim_pipeline.core.ml.backbones import DEFAULT_BACKBONE

ENVIRONMENTS = ("sample", "local", "prod")
REPO_ROOT = Path(__file__).resolve().parent.parent

MET_DEFAULT_BASE_URL = "https://collectionapi.metmuseum.org/public/collection/v1"
SMK_DEFAULT_BASE_URL = "https://api.smk.dk/api/v1"


def artsim_env() -> str:
    """The active environment (`ARTSIM_ENV`, default `sample`)."""
    env = os.environ.get("ARTSIM_ENV", "sample").strip() or "sample"
    if env not in ENVIRONMENTS:
        raise ValueError(f"ARTSIM_ENV={env!r} is not one of {', '.join(ENVIRONMENTS)}")
    return env


def artsim_home() -> Path:
    """Where every piece of state lives (`ARTSIM_HOME`, default `.artsim/` in the repo root)."""
    raw = os.environ.get("ARTSIM_HOME")
    return Path(raw).expanduser().resolve() if raw else REPO_ROOT / ".artsim"


def api_base_url(source: str) -> str:
    """The API root of an API source of the registry: `ARTSIM_<KEY>_BASE_URL` (`ARTSIM_MET_BASE_URL`,
    `ARTSIM_SMK_BASE_URL`, `ARTSIM_CMA_BASE_URL`, `ARTSIM_AIC_BASE_URL`, ...), else the registry's
    live default (`core/sources.py`)."""
    from artsim_pipeline.core.sources import source_spec

    spec = source_spec(source)
    if spec.api_root is None:
        raise ValueError(f"source {source!r} is not an API source")
    return (os.environ.get(spec.base_url_variable) or spec.api_root).rstrip("/")


def api_base_urls() -> dict[str, str]:
    """`api_base_url` of every API source of the registry."""
    from artsim_pipeline.core.sources import API_SOURCES

    return {source: api_base_url(source) for source in API_SOURCES}


def met_base_url() -> str:
    return api_base_url("met")


def smk_base_url() -> str:
    return api_base_url("smk")


def exports_dir() -> Path | None:
    """`ARTSIM_EXPORTS_DIR` (`local`, `prod`): a folder with one sub-folder per collection export
    source, named by its key (`met_medialab/` holding the export file, its images and, optionally,
    its `mapping.toml`); unset: the copies bundled with the sample are read."""
    raw = os.environ.get("ARTSIM_EXPORTS_DIR")
    return Path(raw).expanduser().resolve() if raw else None


def storage_url() -> str | None:
    """`ARTSIM_STORAGE_URL` (`s3://bucket/prefix`): where prod keeps tables and files."""
    return os.environ.get("ARTSIM_STORAGE_URL") or None


def s3_endpoint_url() -> str | None:
    """`ARTSIM_S3_ENDPOINT_URL`: an S3-compatible server (MinIO, moto); unset means AWS."""
    return os.environ.get("ARTSIM_S3_ENDPOINT_URL") or None


# EfficientNet-Lite0's pooled 1280-d vector; why this one: core/ml/backbones.py, the one place it is set.
DEFAULT_IMAGE_BACKBONE = DEFAULT_BACKBONE


def image_backbone() -> str:
    """`ARTSIM_IMAGE_BACKBONE`: `DEFAULT_IMAGE_BACKBONE`, "efficientnet_lite0" (the pooled vector),
    "efficientnet_lite0:s5grid<g>" or "hf:<hub id or path>"."""
    return os.environ.get("ARTSIM_IMAGE_BACKBONE") or DEFAULT_IMAGE_BACKBONE


def gpu_run_tags() -> dict[str, str]:
    """Tags for runs that embed images: `artsim/gpu` (counted by the run queue), plus the
    launcher's GPU tags from the YAML file `ARTSIM_GPU_RUN_TAGS` names (deploy/{ecs,k8s}/...)."""
    import json

    tags: dict[str, str] = {"artsim/gpu": "1"}
    path = os.environ.get("ARTSIM_GPU_RUN_TAGS")
    if path:
        import yaml

        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"ARTSIM_GPU_RUN_TAGS={path} must hold a mapping of run tags")
        tags.update({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in loaded.items()})
    return tags


def configured_mlflow_uri() -> str | None:
    """`MLFLOW_TRACKING_URI` as set (None when unset): prod requires an http(s) tracking server."""
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def mlflow_tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, default a SQLite store under `$ARTSIM_HOME/mlflow/`."""
    uri = configured_mlflow_uri()
    if uri:
        return uri
    directory = artsim_home() / "mlflow"
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'mlflow.db'}"


def allowed_hosts() -> list[str]:
    """`ARTSIM_ALLOWED_HOSTS` (comma-separated): more Host names `artsim serve` answers feedback
    under (loopback names and the bound address always are), e.g. the name of a reverse proxy."""
    return [h.strip() for h in os.environ.get("ARTSIM_ALLOWED_HOSTS", "").split(",") if h.strip()]


def alert_webhook() -> str | None:
    """`ARTSIM_ALERT_WEBHOOK`: a chat or pager webhook URL that failed-run alerts are POSTed to."""
    return os.environ.get("ARTSIM_ALERT_WEBHOOK") or None


def shared_data_dir() -> Path:
    """`ARTSIM_SHARED_DATA`, else `<repo>/../shared/data`: the real API records and photographs the
    sample, the replay server and the benchmarks are built from."""
    raw = os.environ.get("ARTSIM_SHARED_DATA")
    return Path(raw).expanduser().resolve() if raw else REPO_ROOT.parent / "shared" / "data"


# Third-party libraries that phone home or reach the network unless told not to: set for every
# `artsim` command (the Makefile exports the same), never over a value already set.
QUIET_LIBRARIES = {
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
}


def prepare_process_environment() -> list[str]:
    """What every `artsim` command needs in its environment, whatever the shell: `ARTSIM_HOME` (the
    default made explicit, and created), `DAGSTER_HOME` (the repo's dagster.yaml) and
    `QUIET_LIBRARIES`. Returns warnings to show (prod without its own `DAGSTER_HOME`)."""
    warnings = []
    os.environ.setdefault("ARTSIM_HOME", str(artsim_home()))
    if "DAGSTER_HOME" not in os.environ and artsim_env() == "prod":
        warnings.append("ARTSIM_ENV=prod but DAGSTER_HOME is not set: runs are recorded in the local instance "
                        "of the repo's dagster.yaml, not the production one (point DAGSTER_HOME at deploy/prod)")
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT))
    for name, value in QUIET_LIBRARIES.items():
        os.environ.setdefault(name, value)
    artsim_home().mkdir(parents=True, exist_ok=True)
    return warnings


@contextmanager
def preserved(name: str) -> Iterator[None]:
    """The environment variable `name` as it was before the block (set again, or removed), whatever
    the block did to it."""
    saved = os.environ.get(name)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def silence_great_expectations() -> None:
    """Great Expectations reads `GX_ANALYTICS_ENABLED` when it is first imported: off, always
    (the validation suite runs on an ephemeral, offline context)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
