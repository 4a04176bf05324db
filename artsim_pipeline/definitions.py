"""The Dagster code location: `defs` for the environment named by `ARTSIM_ENV`."""

from __future__ import annotations

from dagster import Definitions, load_assets_from_modules

from artsim_pipeline import settings
from artsim_pipeline.defs.curation import assets as curation_assets
from artsim_pipeline.defs.embeddings import assets as embedding_assets
from artsim_pipeline.defs.indexing import assets as indexing_assets
from artsim_pipeline.defs.ingest import assets as ingest_assets
from artsim_pipeline.defs.labels import assets as label_assets
from artsim_pipeline.defs.operations import automation
from artsim_pipeline.defs.training import assets as training_assets
from artsim_pipeline.defs.validation import assets as validation_assets
from artsim_pipeline.resources.encoders import EncoderResource
from artsim_pipeline.resources.io_manager import PolarsParquetIOManager
from artsim_pipeline.resources.mlflow_tracking import MlflowResource
from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore


def build_resources(env: str) -> dict:
    home = settings.artsim_home()
    if env == "prod":
        raise NotImplementedError(
            "ARTSIM_ENV=prod (Postgres instance, S3 storage, remote MLflow) is not built yet: "
            "use ARTSIM_ENV=sample or local"
        )
    tables = TableStore(base_dir=str(home / "storage"))
    return {
        "tables": tables,
        "io_manager": PolarsParquetIOManager(store=tables),
        "storage": ArtsimStorage(home=str(home)),
        "encoder": EncoderResource(),
        "mlflow_tracking": MlflowResource(
            tracking_uri=settings.mlflow_tracking_uri(),
            artifact_location=str(home / "mlflow" / "artifacts"),
        ),
        "museum_api": MuseumApiResource(
            mode="snapshot" if env == "sample" else "live",
            met_base_url=settings.met_base_url(),
            smk_base_url=settings.smk_base_url(),
        ),
    }


def build_defs(env: str | None = None) -> Definitions:
    """Definitions wired for `env` (default: `ARTSIM_ENV`, else `sample`)."""
    env = env or settings.artsim_env()
    return Definitions(
        assets=load_assets_from_modules([ingest_assets, validation_assets, label_assets, embedding_assets, training_assets, indexing_assets, curation_assets]),
        resources=build_resources(env),
        jobs=automation.JOBS,
        schedules=automation.SCHEDULES,
        sensors=automation.SENSORS,
    )


defs = build_defs()
