"""What `artsim serve` reads from storage and keeps: the similarity service and what the pages
derive from it, reloaded whenever the stored index or artworks change.

Memory stays bounded by the index: artworks rows are read by id from memory-mapped serving
copies (`SimilarityService.artwork_rows`), never held as a table or a dict of every row."""

from __future__ import annotations

import threading
from pathlib import Path

from artsim_pipeline.core.sources import SOURCES


class AppState:
    """The stored data the app reads, reloaded when the stored index or artworks change."""

    def __init__(self, home: Path, tables=None, storage=None) -> None:
        from artsim_pipeline.resources.storage import ArtsimStorage
        from artsim_pipeline.resources.tables import TableStore

        self.home = home
        self.tables = tables or TableStore(base_dir=str(home / "storage"))
        self.storage = storage or ArtsimStorage(home=str(home))
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._service = None
        self._pool: list[str] | None = None

    def _disk_stamp(self) -> tuple:
        from artsim_pipeline.resources.artefacts import index_stamps

        return (*index_stamps(self.storage),
                *(self.tables.objects.stamp(self.tables.table_key("artworks", s)) for s in SOURCES))

    def _fresh(self) -> None:
        stamp = self._disk_stamp()
        if stamp != self._stamp:
            from artsim_pipeline.service import SimilarityService

            self._service = SimilarityService(self.home, tables=self.tables, storage=self.storage)
            self._pool = None
            self._stamp = stamp

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
