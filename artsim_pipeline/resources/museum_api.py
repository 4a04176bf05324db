"""The museum API resource: live clients or the bundled snapshot, and the collection exports,
behind one interface."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from dagster import ConfigurableResource
from pydantic import Field

from artsim_pipeline.resources.config import MergingConfig

from artsim_pipeline.core.exports.mapping import ExportMapping
from artsim_pipeline.core.sources import EXPORT_SOURCES, SOURCES, is_export, source_spec
from artsim_pipeline.resources.clients.base import MuseumClient

__all__ = ["MuseumApiResource", "SOURCES"]  # SOURCES: the registry's (core/sources.py), re-exported


class MuseumApiResource(MergingConfig, ConfigurableResource):
    """Builds a `MuseumClient` per source. Rate limits apply per client (one per run and source)."""

    mode: Literal["live", "snapshot"] = Field(default="snapshot", description="live APIs, or the bundled sample")
    met_base_url: str = "https://collectionapi.metmuseum.org/public/collection/v1"
    smk_base_url: str = "https://api.smk.dk/api/v1"
    base_urls: dict[str, str] = Field(
        default_factory=dict,
        description="API root per source key for the other API sources (cma, aic, ...); a source missing here uses "
        "its registry default (core/sources.py). The Met and SMK keep met_base_url / smk_base_url",
    )
    requests_per_second: Optional[float] = Field(
        default=None, description="shared token-bucket rate per source; unset: each source's registry default "
        "(10/s; the Art Institute of Chicago 0.95/s, under its 60 requests a minute)")
    burst: Optional[int] = Field(default=None, description="token-bucket burst; unset: the registry default "
                                 "(5; AIC 1). The Met firewall blocks ~30 quick requests")
    max_workers: int = 8
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    firewall_cooldown_s: float = Field(default=60.0, description="pause for every worker after a 403")
    max_objects: Optional[int] = Field(default=None, description="cap per run (for trial runs against live APIs)")
    met_department_ids: list[int] = Field(default_factory=list)
    smk_filters: Optional[str] = Field(default=None, description='e.g. "[public_domain:true]"')
    exports_dir: Optional[str] = Field(
        default=None,
        description="live mode: a folder with one sub-folder per collection export (ARTSIM_EXPORTS_DIR); "
        "unset, or in snapshot mode: the copies bundled with the sample",
    )

    def client(self, source: str) -> MuseumClient:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
        if is_export(source):
            from artsim_pipeline.resources.clients.export import ExportClient

            return ExportClient(source, self.export_folder(source), self.export_mapping(source), max_objects=self.max_objects)
        if self.mode == "snapshot":
            from artsim_pipeline import settings
            from artsim_pipeline.resources.clients.snapshot import SnapshotClient

            if settings.artsim_env() != "sample":  # a live home never takes in the bundled sample
                raise ValueError(f"museum_api is in snapshot mode, but ARTSIM_ENV={settings.artsim_env()} is a live "
                                 "environment: the bundled sample is only read with ARTSIM_ENV=sample")
            return SnapshotClient.from_bundled_sample(source, max_objects=self.max_objects)
        from artsim_pipeline.resources.clients.registry import client_class

        options = {"met": {"department_ids": self.met_department_ids or None}, "smk": {"filters": self.smk_filters}}
        return client_class(source)(self.base_url(source), self.http_session(source), max_objects=self.max_objects,
                                    **options.get(source, {}))

    def base_url(self, source: str) -> str:
        """The API root of an API source: `met_base_url` / `smk_base_url`, else `base_urls[source]`,
        else the registry's live default."""
        spec = source_spec(source)
        if spec.api_root is None:
            raise ValueError(f"{source!r} is a collection export, not an API")
        legacy = {"met": self.met_base_url, "smk": self.smk_base_url}
        return (legacy.get(source) or self.base_urls.get(source) or spec.api_root).rstrip("/")

    def http_session(self, source: str):
        """A `PoliteSession` at the configured rate, or the source's registry default when none is set."""
        from artsim_pipeline.resources.clients.http import HttpPolicy, PoliteSession

        spec = source_spec(source)
        return PoliteSession(
            HttpPolicy(
                requests_per_second=self.requests_per_second if self.requests_per_second is not None else spec.requests_per_second,
                burst=self.burst if self.burst is not None else spec.burst,
                max_workers=self.max_workers,
                timeout_s=self.timeout_s,
                max_retries=self.max_retries,
                backoff_base_s=self.backoff_base_s,
                backoff_max_s=self.backoff_max_s,
                firewall_cooldown_s=self.firewall_cooldown_s,
            )
        )

    def export_folder(self, source: str) -> Path:
        """Where an export source's files are: `<exports_dir>/<source>/` in live mode when
        `exports_dir` is set, else the bundled copy (`artsim_pipeline/sample/exports/<source>/`)."""
        if not is_export(source):
            raise ValueError(f"{source!r} is an API source, not a collection export")
        if self.mode == "live" and self.exports_dir:
            folder = Path(self.exports_dir) / source
            if not folder.is_dir():
                raise FileNotFoundError(f"collection export {source}: no folder {folder} (ARTSIM_EXPORTS_DIR={self.exports_dir})")
            return folder
        from artsim_pipeline.sample import bundled_export_dir

        return bundled_export_dir(source)

    def export_mapping(self, source: str) -> ExportMapping:
        """The checked mapping of an export source: the folder's `mapping.toml`,
        else the bundled one (an export folder may hold only the data)."""
        from artsim_pipeline.resources.clients.export import MAPPING_FILE, load_mapping
        from artsim_pipeline.sample import bundled_export_dir

        path = self.export_folder(source) / MAPPING_FILE
        return load_mapping(path if path.is_file() else bundled_export_dir(source) / MAPPING_FILE, source)

    def real_image_sources(self) -> set[str]:
        """The sources whose images are real photographs in this mode: in `live` mode every source
        (the museums' own images); in `snapshot` mode only the collection exports whose mapping
        says `[images] real = true` (the API sources' sample images are stand-ins)."""
        if self.mode == "live":
            return set(SOURCES)
        return {source for source in EXPORT_SOURCES if self.export_mapping(source).real_images}
