"""The bundled sample collection behind the same interface as the live clients (ARTSIM_ENV=sample).

One class for every API source of the registry: the source's live client class
(`registry.client_class`) says how a record is keyed, dated, stored and which image it has, so a
snapshot run stores what a live run would. Sources whose registry entry is `incremental` list
only the records changed since the cursor's day, as their API does.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from artsim_pipeline.core.sources import API_SOURCES, source_spec
from artsim_pipeline.resources.clients.base import FetchResult, ImageFetch, Listing, MuseumClient, utc_now
from artsim_pipeline.resources.clients.registry import client_class


class SnapshotClient(MuseumClient):
    """Serves recorded API records and the sample's stand-in images, offline."""

    def __init__(self, source: str, raw_lines: list[str], image_bytes=None, max_objects: int | None = None) -> None:
        if source not in API_SOURCES:
            raise ValueError(f"no snapshot for source {source!r}; snapshots: {', '.join(API_SOURCES)}")
        self.source = source
        self.rules = client_class(source)
        self.incremental = source_spec(source).incremental
        self._image_bytes = image_bytes
        self._records: dict[str, tuple[str, dict]] = {}
        for line in raw_lines:
            record = json.loads(line)
            key = self.rules.record_key(record)
            if key is None:
                raise ValueError(f"a {source} sample record has no id: {line[:120]!r}")
            self._records[key] = (self.rules.snapshot_text(record, line.strip()), record)
        self.max_objects = max_objects

    @classmethod
    def from_bundled_sample(cls, source: str, max_objects: int | None = None) -> "SnapshotClient":
        from artsim_pipeline.sample import load_sample_raw_lines, sample_image_bytes

        return cls(source, load_sample_raw_lines(source), sample_image_bytes, max_objects=max_objects)

    def _modified(self, record: dict) -> str | None:
        return self.rules.record_modified(record)

    def list_ids(self, since: str | None = None) -> Listing:
        ids = sorted(self._records)
        full = True
        if since and self.incremental:
            day = since[:10]
            ids = [i for i in ids if (self._modified(self._records[i][1]) or "")[:10] >= day]
            full = False
        if self.max_objects is not None and len(ids) > self.max_objects:
            ids, full = ids[: self.max_objects], False
        return Listing(ids=ids, full=full, cursor=utc_now().date().isoformat() if self.incremental else utc_now().isoformat())

    def fetch_objects(self, ids: Iterable[str]) -> Iterator[FetchResult]:
        for object_id in ids:
            entry = self._records.get(object_id)
            if entry is None:
                yield FetchResult(object_id, "gone", error="not in the snapshot")
            else:
                yield FetchResult(object_id, "ok", raw_json=entry[0], modified=self._modified(entry[1]))

    def fetch_image(self, url: str) -> ImageFetch:
        content = self._image_bytes(url) if self._image_bytes else None
        if content is None:
            return ImageFetch(url, None, error="image not in the snapshot", gone=True)
        return ImageFetch(url, content)

    def image_url(self, record: dict) -> str | None:
        return self.rules.public_image_url(record)  # the same rules as the live client
