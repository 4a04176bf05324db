"""The Dagster code location: `defs` for the environment named by `ARTSIM_ENV`."""

from __future__ import annotations

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
from artsim_pipeline.resources.environment import build_resources

__all__ = ["build_defs", "build_resources", "defs"]


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
