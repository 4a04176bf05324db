"""The museum API resource: live clients or the bundled snapshot, behind one interface."""

from __future__ import annotations

from typing import Literal, Optional

from dagster import ConfigurableResource
from pydantic import Field

from artsim_pipeline.resources.clients.base import MuseumClient

SOURCES = ("met", "smk")


class MuseumApiResource(ConfigurableResource):
    """Builds a `MuseumClient` per source. Rate limits apply per client (one per run and source)."""

    mode: Literal["live", "snapshot"] = Field(default="snapshot", description="live APIs, or the bundled sample")
    met_base_url: str = "https://collectionapi.metmuseum.org/public/collection/v1"
    smk_base_url: str = "https://api.smk.dk/api/v1"
    requests_per_second: float = Field(default=10.0, description="shared token-bucket rate per source")
    burst: int = Field(default=5, description="token-bucket burst; the Met firewall blocks ~30 quick requests")
    max_workers: int = 8
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    firewall_cooldown_s: float = Field(default=60.0, description="pause for every worker after a 403")
    max_objects: Optional[int] = Field(default=None, description="cap per run (for trial runs against live APIs)")
    met_department_ids: list[int] = Field(default_factory=list)
    smk_filters: Optional[str] = Field(default=None, description='e.g. "[public_domain:true]"')

    def client(self, source: str) -> MuseumClient:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
        if self.mode == "snapshot":
            from artsim_pipeline.resources.clients.snapshot import SnapshotClient

            return SnapshotClient.from_bundled_sample(source, max_objects=self.max_objects)
        from artsim_pipeline.resources.clients.http import HttpPolicy, PoliteSession

        http = PoliteSession(
            HttpPolicy(
                requests_per_second=self.requests_per_second,
                burst=self.burst,
                max_workers=self.max_workers,
                timeout_s=self.timeout_s,
                max_retries=self.max_retries,
                backoff_base_s=self.backoff_base_s,
                backoff_max_s=self.backoff_max_s,
                firewall_cooldown_s=self.firewall_cooldown_s,
            )
        )
        if source == "met":
            from artsim_pipeline.resources.clients.met import MetClient

            return MetClient(self.met_base_url, http, department_ids=self.met_department_ids or None, max_objects=self.max_objects)
        from artsim_pipeline.resources.clients.smk import SmkClient

        return SmkClient(self.smk_base_url, http, filters=self.smk_filters, max_objects=self.max_objects)
