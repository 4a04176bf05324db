"""A short, human summary of what the pipeline holds, read from the stored tables."""

from __future__ import annotations

import polars as pl

from artsim_pipeline import settings
from artsim_pipeline.resources.museum_api import SOURCES
from artsim_pipeline.resources.tables import TableStore


def collect_summary() -> list[str]:
    store = TableStore(base_dir=str(settings.artsim_home() / "storage"))
    lines = []
    for source in SOURCES:
        raw = store.read_table("raw_objects", source)
        if raw is not None:
            statuses = dict(raw.group_by("status").len().iter_rows())
            lines.append(f"raw_objects[{source}]: {raw.height} rows {statuses}")
        images = store.read_table("raw_images", source)
        if images is not None:
            statuses = dict(images.group_by("status").len().iter_rows())
            lines.append(f"raw_images[{source}]: {images.height} rows {statuses}")
        artworks = store.read_table("artworks", source)
        if artworks is not None:
            quarantine = store.read_table("artworks_quarantine", source)
            lines.append(f"artworks[{source}]: {artworks.height} rows, quarantined {0 if quarantine is None else quarantine.height}")
    return lines
