"""The chunked collection map in `artsim serve` (what the `collection_map` asset stored under
`maps/collection_map/`, see `core/collection_map/chunks.py`):

- ``GET /map`` - the viewer page, and ``GET /map/viewer.js`` its script (the page runs under
  ``script-src 'self'``, unlike the rest of the app, which runs no script at all);
- ``GET /map/data/manifest.json`` - the manifest (legends, chunk list), never cached;
- ``GET /map/data/chunks/<hash>.bin`` - the binary point chunks (content-addressed: cached for good);
- ``GET /map/api/point/{row}`` - one point's details and its nearest works on the map (from the
  similar-works index; none while it is not built);
- ``GET /map/thumb/{row}`` - the point's stored image, asked for only once few points are in view.

Only names the layout knows are served (`artefacts.read_map_part`) and rows are integers, so no
path can leave the map's folder.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, HTMLResponse

from artsim_pipeline.resources import artefacts
from artsim_pipeline.web.site import Site, api_error

MAP_NEIGHBOURS = 8
MAP_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
IMAGE_PATH = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{64}\.(jpg|jpeg|png|webp|gif)$")
IMAGE_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}
NO_CACHE = {"Cache-Control": "no-cache"}
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}


class _StoredMap:
    """The stored map's manifest and details, read again when the manifest changes."""

    def __init__(self, storage) -> None:
        self.storage = storage
        self._lock = threading.Lock()
        self._stamp: Any = None
        self.manifest: dict[str, Any] | None = None
        self._details = None
        self._rows: dict[str, int] | None = None

    def _refresh(self) -> None:
        """Read the manifest again when its stamp changed (call under the lock)."""
        stamp = artefacts.map_manifest_stamp(self.storage)
        if stamp != self._stamp:
            self.manifest = artefacts.read_map_manifest(self.storage)
            self._details = self._rows = None
            self._stamp = stamp

    def fresh(self) -> dict[str, Any] | None:
        with self._lock:
            self._refresh()
            return self.manifest

    def details(self):
        """The details table of the current manifest: the manifest and its details are read under
        one lock, so a rebuild landing in between cannot pair new with old."""
        with self._lock:
            self._refresh()
            if self._details is None and self.manifest is not None:
                self._details = artefacts.read_map_details(self.storage, self.manifest)
            return self._details

    def current(self, version: str | None) -> bool:
        """Whether `version` (the details name a viewer read in its manifest) is still the map's:
        rows are positions in that table, so a rebuilt map gives another work under a row."""
        if version is None:
            return True
        with self._lock:
            self._refresh()
            return self.manifest is not None and version == self.manifest.get("details")

    def row(self, row: int) -> dict[str, Any] | None:
        details = self.details()
        if details is None or not 0 <= row < details.height:
            return None
        return details.row(row, named=True)

    def row_of(self, artwork_id: str) -> int | None:
        details = self.details()
        with self._lock:
            if self._rows is None and details is not None:
                self._rows = dict(zip(details["artwork_id"].to_list(), range(details.height)))
            return (self._rows or {}).get(artwork_id)


def map_router(site: Site) -> APIRouter:
    """The map's routes over the app's storage (local or S3)."""
    from artsim_pipeline.core.collection_map.chunks import manifest_json, point_details
    from artsim_pipeline.core.collection_map.viewer import VIEWER_SCRIPT, viewer_page

    router = APIRouter()
    stored = _StoredMap(site.state.storage)

    def nearest_on_map(artwork_id: str) -> list[dict[str, Any]]:
        from artsim_pipeline.service import NotBuiltError

        try:
            index = site.state.service.index
            vector = index.get_vector(artwork_id)
        except (NotBuiltError, KeyError):
            return []
        found, _ = index.query(vector[None, :], MAP_NEIGHBOURS, exclude_ids=[artwork_id])
        out = []
        for other in found[0].tolist():
            row = stored.row_of(other) if other else None
            if row is not None:
                d = stored.row(row)
                out.append({"row": row, "artwork_id": other, "title": d["title"], "maker": d["maker"],
                            "date": d["date"], "museum": d["museum"], "x": float(d["x"]), "y": float(d["y"])})
        return out

    @router.get("/map", response_class=HTMLResponse)
    def map_page():
        manifest = stored.fresh()
        if manifest is None:
            return site.page("error.html", status_code=404, status=404, heading="No map yet",
                             message="The collection map has not been built: materialise collection_map first.")
        return HTMLResponse(viewer_page(manifest.get("title") or "artsim collection map"),
                            headers={"Content-Security-Policy": MAP_CSP, **NO_CACHE})

    @router.get("/map/viewer.js")
    def viewer_script():
        return Response(VIEWER_SCRIPT, media_type="text/javascript; charset=utf-8", headers=NO_CACHE)

    @router.get("/map/data/manifest.json")
    def manifest_file():
        manifest = stored.fresh()
        if manifest is None:
            return api_error(404, "no collection map is stored")
        return Response(manifest_json(manifest), media_type="application/json", headers=NO_CACHE)

    @router.get("/map/data/{name:path}")
    def chunk_file(name: str):
        data = artefacts.read_map_part(site.state.storage, name) if name.startswith("chunks/") else None
        if data is None:
            return api_error(404, "no such part of the map")
        return Response(data, media_type="application/octet-stream", headers=IMMUTABLE)

    @router.get("/map/api/point/{row}")
    def point(row: int, map: str | None = None):
        if not stored.current(map):
            return api_error(409, "the map changed on the server: reload the page")
        details = stored.row(row)
        if details is None:
            return api_error(404, f"no point {row} on the map")
        return point_details(details, nearest_on_map(details["artwork_id"]))

    @router.get("/map/thumb/{row}")
    def thumbnail(row: int, map: str | None = None):
        if not stored.current(map):
            return api_error(409, "the map changed on the server: reload the page")
        details = stored.row(row)
        path = details.get("image_path") if details else None
        if not path or not IMAGE_PATH.match(path):
            return api_error(404, f"no image for point {row}")
        local = artefacts.image_file(site.state.storage, path)
        if local is None:
            return api_error(404, f"no image for point {row}")
        # a row names a work only within one version of the map: cached for good when the URL names it
        headers = IMMUTABLE if map else NO_CACHE
        return FileResponse(local, media_type=IMAGE_TYPES[path.rsplit(".", 1)[1]], headers=headers)

    return router
