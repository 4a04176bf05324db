"""What `artsim serve` reads from storage and keeps: the similarity service and what the pages
derive from it, reloaded whenever the stored index or artworks change.

Memory stays bounded by the index: artworks rows are read by id from memory-mapped serving
copies (`SimilarityService.artwork_rows`), never held as a table or a dict of every row.

When to reload is checked on every request, so the check is cheap: one stat per stored file (a HEAD
on S3) of the files' versions (locally inode, mtime and size, each write renaming a new file in; on
S3 the ETag). A write can still leave those as they were (a new file given a freed inode back, in
the same mtime tick, at the same size), so at most every `FINGERPRINT_SECONDS` the contents'
fingerprints are compared too (each museum's `artworks` footer with its write id, 64 KB locally or
a ranged GET on S3, and the indexes' info files): a change is served within that long at worst,
on the next request in the usual case."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from artsim_pipeline.core.sources import SOURCES


class AppState:
    """The stored data the app reads, reloaded when the stored index or artworks change."""

    FINGERPRINT_SECONDS = 1.5  # the most a change that leaves the files' versions as they were goes unseen

    def __init__(self, home: Path, tables=None, storage=None) -> None:
        from artsim_pipeline.resources.storage import ArtsimStorage
        from artsim_pipeline.resources.tables import TableStore

        self.home = home
        self.tables = tables or TableStore(base_dir=str(home / "storage"))
        self.storage = storage or ArtsimStorage(home=str(home))
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._fingerprint: tuple | None = None
        self._fingerprint_due = 0.0
        self._service = None
        self._pool: list[str] | None = None

    def _disk_stamp(self) -> tuple:
        """The stored files' versions: one stat (a HEAD on S3) each."""
        from artsim_pipeline.resources.artefacts import index_stamps

        return (*index_stamps(self.storage),
                *(self.tables.objects.version(self.tables.table_key("artworks", s)) for s in SOURCES))

    def _disk_fingerprint(self) -> tuple:
        """What the stored files hold: `TableStore.table_fingerprint` of each museum's artworks (the
        key its serving copy is written under) and the indexes' info files' digest."""
        from artsim_pipeline.resources.artefacts import index_fingerprint

        return (index_fingerprint(self.storage), *(self.tables.table_fingerprint("artworks", s) for s in SOURCES))

    def _fresh(self) -> None:
        stamp, now = self._disk_stamp(), time.monotonic()
        if stamp == self._stamp and now < self._fingerprint_due:
            return
        fingerprint = self._disk_fingerprint()
        self._fingerprint_due = now + self.FINGERPRINT_SECONDS
        if stamp != self._stamp or fingerprint != self._fingerprint:
            from artsim_pipeline.service import SimilarityService

            self._service = SimilarityService(self.home, tables=self.tables, storage=self.storage)
            self._pool = None
            self._stamp, self._fingerprint = stamp, fingerprint

    @property
    def service(self):
        with self._lock:
            self._fresh()
            return self._service

    def works(self):
        """Artworks rows by id (`core.search.ArtworkRows`: ``get``, ``in``); raises NotBuiltError
        without artworks."""
        return self.service.artwork_rows

    def in_index(self, artwork_id: str) -> bool:
        """Whether the id is a live item of the index (False while no index is built)."""
        from artsim_pipeline.service import NotBuiltError

        try:
            return artwork_id in self.service.index
        except NotBuiltError:
            return False

    def pool(self) -> list[str]:
        """Indexed ids that have an artworks row: where random candidates come from."""
        index = self.service.index
        works = self.works()
        with self._lock:
            if self._pool is None:
                self._pool = sorted(works.having_rows(index.ids))
            return self._pool
