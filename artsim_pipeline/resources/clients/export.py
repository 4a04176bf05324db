"""A collection export (CSV or JSON lines plus image files) behind the `MuseumClient` interface.

An export folder holds the export file, its images and (usually) its ``mapping.toml``::

    met_medialab/
      mapping.toml          # see artsim_pipeline/core/exports/mapping.py
      records.csv           # [file] path
      images/CRDImages/...  # [images] folder: a record's image URL path names its file

The client reads the file once, splits it into verbatim rows (``core/exports/text.py``) and
serves them like API records: `list_ids` is always a full listing (an id that leaves the export
becomes `gone`), `fetch_objects` yields each row's JSON text, `fetch_image` reads the file the
image URL's path names (a missing file is a `not_found` failure, never an exception). What
reading found (rows, values repaired or undecodable, duplicate ids) is in the listing's
`notes`, which `raw_objects` puts into its metadata.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Iterator

from artsim_pipeline.core.exports.mapping import ExportMapping, MappingError, escape_url, image_file_for_url, parse_mapping
from artsim_pipeline.core.exports.text import read_export, text_report
from artsim_pipeline.resources.clients.base import FetchResult, ImageFetch, Listing, MuseumClient

MAPPING_FILE = "mapping.toml"


def load_mapping(path: Path, source: str) -> ExportMapping:
    """Read and check a mapping file; it must be the mapping of ``source``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"collection export {source}: no mapping file {path}") from None
    mapping = parse_mapping(text, where=str(path))
    if mapping.source != source:
        raise MappingError(f"{path}: source is {mapping.source!r}, but it was loaded for {source!r}")
    return mapping


class ExportClient(MuseumClient):
    """Serves one export folder's rows and image files (see the module docstring)."""

    def __init__(self, source: str, folder: Path, mapping: ExportMapping, max_objects: int | None = None) -> None:
        self.source = source
        self.folder = Path(folder)
        self.mapping = mapping
        self.max_objects = max_objects
        path = self.folder / mapping.path
        if not path.is_file():
            raise FileNotFoundError(f"collection export {source}: no export file {path} ([file] path in its mapping)")
        data = path.read_bytes()
        self.digest = hashlib.sha256(data).hexdigest()
        self.read = read_export(data, mapping)
        self._rows = {row.source_id: row for row in self.read.rows}
        self.images_dir = (self.folder / mapping.images.folder).resolve() if mapping.images is not None else None
        self._notes: dict[str, int] | None = None
        self.examples: dict[str, list[str]] = {}  # a few repaired / undecodable values, after notes()

    def notes(self) -> dict[str, int]:
        """Counts for the `raw_objects` metadata: rows, blank rows, duplicate ids, rows without
        an id, and text values read, decoded with the fallback, repaired and undecodable."""
        if self._notes is None:
            report = text_report((json.loads(row.raw_json) for row in self.read.rows), self.mapping.text)
            self._notes = {
                "export_rows": len(self.read.rows),
                "export_blank_rows": self.read.blank_rows,
                "export_duplicate_ids": len(self.read.duplicate_ids),
                "export_rows_without_id": self.read.rows_without_id,
                "text_values": report["values"],
                "text_values_decoded_with_fallback": self.read.fallback_values,
                "text_values_repaired": report["repaired"],
                "text_values_undecodable": report["undecodable"],
            }
            self.examples = {"repaired": report["repair_examples"], "undecodable": report["undecodable_examples"]}
        return dict(self._notes)

    def list_ids(self, since: str | None = None) -> Listing:
        ids = list(self._rows)
        full = True
        if self.max_objects is not None and len(ids) > self.max_objects:
            ids, full = ids[: self.max_objects], False
        # the cursor is the file's content hash: informative only, every run reads the whole file
        return Listing(ids=ids, full=full, cursor=self.digest, notes=self.notes())

    def fetch_objects(self, ids: Iterable[str]) -> Iterator[FetchResult]:
        for source_id in ids:
            row = self._rows.get(source_id)
            if row is None:
                yield FetchResult(source_id, "gone", error="not in the export file")
            else:
                yield FetchResult(source_id, "ok", raw_json=row.raw_json)

    def image_url(self, record: dict) -> str | None:
        if self.mapping.images is None or not isinstance(record, dict):
            return None
        value = record.get(self.mapping.images.column)
        return escape_url(value) if isinstance(value, str) else None

    def fetch_image(self, url: str) -> ImageFetch:
        if self.images_dir is None:
            return ImageFetch(url, None, error="the mapping names no image folder", gone=True)
        relative = image_file_for_url(url)
        if relative is None:
            return ImageFetch(url, None, error=f"the URL's path names no file inside {self.mapping.images.folder}/", gone=True)
        path = (self.images_dir / relative).resolve()
        if not path.is_relative_to(self.images_dir):
            return ImageFetch(url, None, error=f"{relative} is outside the export's image folder", gone=True)
        if not path.is_file():
            return ImageFetch(url, None, error=f"no file {self.mapping.images.folder}/{relative} in the export", gone=True)
        try:
            return ImageFetch(url, path.read_bytes())
        except OSError as exc:
            return ImageFetch(url, None, error=f"cannot read {self.mapping.images.folder}/{relative}: {exc}", status="read_error")
