"""The resources for an environment (`ARTSIM_ENV`): what `definitions.build_defs` gives the
assets, and what the service, the web app and the summary read the stored tables and files
through (so they need no asset module to find them)."""

from __future__ import annotations

from artsim_pipeline import settings
from artsim_pipeline.resources.encoders import EncoderResource
from artsim_pipeline.resources.io_manager import PolarsParquetIOManager
from artsim_pipeline.resources.mlflow_tracking import MlflowResource
from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore


def build_resources(env: str) -> dict:
    """`sample` and `local` keep everything under `$ARTSIM_HOME`; `prod` keeps tables and files
    under `ARTSIM_STORAGE_URL` (S3 through dagster-aws) and tracks runs on the MLflow server at
    `MLFLOW_TRACKING_URI`, so any machine with the same variables can run any asset."""
    home = settings.artsim_home()
    if env == "prod":
        url = settings.storage_url()
        tracking_uri = settings.configured_mlflow_uri() or ""
        if not url or not url.startswith("s3://"):
            raise ValueError("ARTSIM_ENV=prod needs ARTSIM_STORAGE_URL=s3://bucket/prefix (see deploy/README.md)")
        if not tracking_uri.startswith(("http://", "https://")):
            raise ValueError("ARTSIM_ENV=prod needs MLFLOW_TRACKING_URI=http(s)://<mlflow server> (see deploy/README.md)")
        endpoint = settings.s3_endpoint_url()
        tables = TableStore(base_dir=f"{url.rstrip('/')}/storage", s3_endpoint_url=endpoint)
        storage = ArtsimStorage(home=str(home), remote_url=url, s3_endpoint_url=endpoint)
        mlflow_tracking = MlflowResource(tracking_uri=tracking_uri)
    else:
        tables = TableStore(base_dir=str(home / "storage"))
        storage = ArtsimStorage(home=str(home))
        mlflow_tracking = MlflowResource(tracking_uri=settings.mlflow_tracking_uri(),
                                         artifact_location=str(home / "mlflow" / "artifacts"))
    return {
        "tables": tables,
        "io_manager": PolarsParquetIOManager(store=tables),
        "storage": storage,
        "encoder": EncoderResource(backbone=settings.image_backbone()),
        "mlflow_tracking": mlflow_tracking,
        "museum_api": MuseumApiResource(
            mode="snapshot" if env == "sample" else "live",
            met_base_url=settings.met_base_url(),
            smk_base_url=settings.smk_base_url(),
            base_urls={k: v for k, v in settings.api_base_urls().items() if k not in ("met", "smk")},
            exports_dir=str(exports) if (exports := settings.exports_dir()) else None,
        ),
    }
