"""The Dagster code location: `defs` for the environment named by `ARTSIM_ENV`."""

from __future__ import annotations

import os

from dagster import Definitions, load_assets_from_modules

from artsim_pipeline import settings
from artsim_pipeline.defs.curation import assets as curation_assets
from artsim_pipeline.defs.embeddings import assets as embedding_assets
from artsim_pipeline.defs.indexing import assets as indexing_assets
from artsim_pipeline.defs.indexing import search_assets
from artsim_pipeline.defs.ingest import assets as ingest_assets
from artsim_pipeline.defs.labels import assets as label_assets
from artsim_pipeline.defs.operations import automation
from artsim_pipeline.defs.training import assets as training_assets
from artsim_pipeline.defs.training import evaluation as evaluation_assets
from artsim_pipeline.defs.validation import assets as validation_assets
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
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
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


def build_defs(env: str | None = None) -> Definitions:
    """Definitions wired for `env` (default: `ARTSIM_ENV`, else `sample`)."""
    env = env or settings.artsim_env()
    gpu_tags = settings.gpu_run_tags()
    return Definitions(
        assets=automation.with_automation(load_assets_from_modules(
            [ingest_assets, validation_assets, label_assets, embedding_assets, training_assets, evaluation_assets, indexing_assets, search_assets,
             curation_assets])),
        resources=build_resources(env),
        jobs=[*automation.JOBS, automation.embed_images_job(gpu_tags)],
        schedules=automation.SCHEDULES,
        sensors=[*automation.SENSORS, *automation.automation_sensors(gpu_tags)],
    )


defs = build_defs()
