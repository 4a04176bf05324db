"""The bundled sample collection: real API records of every API source of the registry (the
Met, SMK, Cleveland, the Art Institute of Chicago) with stand-in images, and a real collection
export with real photographs.

Built by ``scripts/build_sample.py`` from the shared real-data folder. It stands in for the live
APIs and image hosts in the ``sample`` environment and in tests:

* ``<source>_objects.jsonl.gz`` (``met``, ``smk``, ``cma``, ``aic``): one record a line, each line
  the record's JSON text as the API returned it (an AIC record inside the client's stored shape,
  ``{"data": ..., "info": ..., "config": ...}``, which keeps the licence of its description);
* ``images/index.json``: image URL -> file name under ``images/``; the files are deterministic
  stand-in JPEGs rendered from each record's metadata
  (:mod:`artsim_pipeline.sample.standin_images`), since the real image hosts are unreachable;
* ``exports/<source>/``: each collection export source of the registry
  (:mod:`artsim_pipeline.core.sources`), copied verbatim with its ``mapping.toml``:
  ``exports/met_medialab/`` holds the Met MediaLab's ``records.csv`` and 427 real photographs.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from artsim_pipeline.core.sources import API_SOURCES, EXPORT_SOURCES

__all__ = ["SAMPLE_DIR", "SOURCES", "EXPORTS_DIR", "bundled_export_dir", "load_sample_raw_lines", "load_sample_records",
           "sample_image_bytes"]

#: Folder holding the sample files.
SAMPLE_DIR: Path = Path(__file__).resolve().parent
#: API sources the sample holds snapshots of (the exports are under EXPORTS_DIR).
SOURCES: tuple[str, ...] = API_SOURCES
IMAGES_DIR: Path = SAMPLE_DIR / "images"
EXPORTS_DIR: Path = SAMPLE_DIR / "exports"


def bundled_export_dir(source: str) -> Path:
    """The folder of the bundled copy of an export source (its ``mapping.toml`` and files)."""
    if source not in EXPORT_SOURCES:
        raise ValueError(f"{source!r} is not a collection export; exports: {', '.join(EXPORT_SOURCES)}")
    return EXPORTS_DIR / source


def _records_path(source: str) -> Path:
    if source not in SOURCES:
        raise ValueError(f"unknown sample source {source!r}; expected one of {', '.join(SOURCES)}")
    return SAMPLE_DIR / f"{source}_objects.jsonl.gz"


def load_sample_raw_lines(source: str) -> list[str]:
    """The verbatim JSON texts of the sample records of an API ``source``."""
    with gzip.open(_records_path(source), "rt", encoding="utf-8", newline="\n") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def load_sample_records(source: str) -> list[dict]:
    """The sample records of an API ``source``, parsed."""
    return [json.loads(line) for line in load_sample_raw_lines(source)]


@lru_cache(maxsize=1)
def _image_index() -> dict[str, str]:
    """Image URL -> file name, read once."""
    path = IMAGES_DIR / "index.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def sample_image_bytes(url: str) -> bytes | None:
    """The stand-in JPEG bytes for an image URL, or ``None`` when the sample has no image for it."""
    name = _image_index().get(url)
    if name is None:
        return None
    path = IMAGES_DIR / name
    return path.read_bytes() if path.is_file() else None
