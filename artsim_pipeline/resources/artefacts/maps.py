"""The collection map (single-file page and chunked), its layout and the clusters' state.

Part of the storage layout: `resources/artefacts/__init__.py` has the table of keys."""

from __future__ import annotations

import hashlib
import io
import json
import re
from typing import Any

import polars as pl

from artsim_pipeline.resources.storage import ArtsimStorage


# -- the collection map ---------------------------------------------------------------------------------

MAP_KEY = "maps/collection_map.html"


def save_collection_map(storage: ArtsimStorage, html: str) -> str:
    """Store the map's page; returns where it lives."""
    storage.objects.write_bytes(MAP_KEY, html.encode("utf-8"))
    return storage.objects.uri(MAP_KEY)


# the chunked map (any size; served by `artsim serve` at /map): content-addressed chunks and
# details, then the manifest that names them, written last (readers reload on its stamp)
CHUNKED_MAP_KEY = "maps/collection_map"
MAP_MANIFEST_FILE = "manifest.json"
_MAP_PART = re.compile(r"^(chunks/[0-9a-f]{24}\.bin|details-[0-9a-f]{24}\.parquet)$")


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def save_chunked_map(storage: ArtsimStorage, manifest: dict[str, Any], chunks: dict[str, bytes],
                     details: pl.DataFrame) -> str:
    """Store the chunked map (`core.collection_map.chunks.build_chunked_map`): each chunk under
    `chunks/<content hash>.bin` (one already stored is left alone), the details as
    `details-<content hash>.parquet`, then `manifest.json` naming them. Parts the new manifest no
    longer names are removed afterwards (a reader that fetched the old manifest just before may
    miss a chunk: the page then says the map changed). Returns the manifest's location."""
    from artsim_pipeline.core.collection_map.chunks import manifest_json

    for name, blob in chunks.items():
        key = f"{CHUNKED_MAP_KEY}/chunks/{name}"
        if not storage.objects.exists(key):
            storage.objects.write_bytes(key, blob)
    data = _parquet_bytes(details)
    details_name = f"details-{hashlib.sha256(data).hexdigest()[:24]}.parquet"
    storage.objects.write_bytes(f"{CHUNKED_MAP_KEY}/{details_name}", data)
    manifest = {**manifest, "details": details_name}
    storage.objects.write_bytes(f"{CHUNKED_MAP_KEY}/{MAP_MANIFEST_FILE}", manifest_json(manifest))
    named = {f"chunks/{c['file']}" for c in manifest["chunks"]} | {details_name}
    for key in list(storage.objects.list_keys(CHUNKED_MAP_KEY)):
        part = key[len(CHUNKED_MAP_KEY) + 1:]
        if _MAP_PART.match(part) and part not in named:
            storage.objects.delete(key)
    return storage.objects.uri(f"{CHUNKED_MAP_KEY}/{MAP_MANIFEST_FILE}")


def read_map_manifest(storage: ArtsimStorage) -> dict[str, Any] | None:
    """The stored chunked map's manifest, or None when none is stored."""
    data = storage.objects.read_bytes(f"{CHUNKED_MAP_KEY}/{MAP_MANIFEST_FILE}")
    return json.loads(data) if data else None


def map_manifest_stamp(storage: ArtsimStorage) -> tuple | None:
    """What changes whenever the chunked map is stored again."""
    return storage.objects.stamp(f"{CHUNKED_MAP_KEY}/{MAP_MANIFEST_FILE}")


def read_map_part(storage: ArtsimStorage, name: str) -> bytes | None:
    """A chunk (`chunks/<hash>.bin`) or the details (`details-<hash>.parquet`) of the stored map,
    or None; any other name is refused (None), so no path can leave the map's folder. Parts are
    content-addressed: from S3 each is fetched once into the local cache."""
    if not isinstance(name, str) or not _MAP_PART.match(name):
        return None
    path = storage.local_file(f"{CHUNKED_MAP_KEY}/{name}")
    return path.read_bytes() if path is not None else None


def read_map_details(storage: ArtsimStorage, manifest: dict[str, Any]) -> pl.DataFrame | None:
    """The details table the manifest names (one row per point, by `row`), or None."""
    data = read_map_part(storage, str(manifest.get("details", "")))
    return pl.read_parquet(io.BytesIO(data)) if data is not None else None


# incremental state: the layout (coordinates + vector fingerprints) and the clusters' centroids,
# each with an info document naming the digest of the data it goes with (a pair torn by a crash
# reads as nothing stored, so the next run is a full one)
MAP_LAYOUT_KEY = "maps/collection_map/layout"
CLUSTERS_STATE_KEY = "models/clusters"


def _save_state(storage: ArtsimStorage, key: str, files: dict[str, bytes], info: dict[str, Any]) -> None:
    digests = {}
    for name, data in files.items():
        storage.objects.write_bytes(f"{key}/{name}", data)
        digests[name] = hashlib.sha256(data).hexdigest()
    body = {"info": info, "digests": digests}
    storage.objects.write_bytes(f"{key}/info.json", json.dumps(body, indent=2, sort_keys=True).encode("utf-8"))


def _load_state(storage: ArtsimStorage, key: str, names: tuple[str, ...]) -> tuple[dict[str, bytes], dict[str, Any]] | None:
    raw = storage.objects.read_bytes(f"{key}/info.json")
    if raw is None:
        return None
    body = json.loads(raw)
    files = {}
    for name in names:
        data = storage.objects.read_bytes(f"{key}/{name}")
        if data is None or hashlib.sha256(data).hexdigest() != body.get("digests", {}).get(name):
            return None
        files[name] = data
    return files, body.get("info", {})


def save_map_layout(storage: ArtsimStorage, layout) -> None:
    """Store the map's layout (`core.collection_map.placement.Layout`) for the next run."""
    _save_state(storage, MAP_LAYOUT_KEY, {"layout.parquet": _parquet_bytes(layout.points)}, layout.info)


def load_map_layout(storage: ArtsimStorage):
    """The stored `Layout`, or None (none stored, or torn)."""
    from artsim_pipeline.core.collection_map.placement import Layout

    state = _load_state(storage, MAP_LAYOUT_KEY, ("layout.parquet",))
    if state is None:
        return None
    files, info = state
    return Layout(pl.read_parquet(io.BytesIO(files["layout.parquet"])), info)


def save_cluster_state(storage: ArtsimStorage, state) -> None:
    """Store the clusters' state (`core.clusters.ClusterState`: labels, centroids, info)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(state.centroids, dtype=np.float32), allow_pickle=False)
    _save_state(storage, CLUSTERS_STATE_KEY, {"labels.parquet": _parquet_bytes(state.labels),
                                              "centroids.npy": buffer.getvalue()}, state.info)


def load_cluster_state(storage: ArtsimStorage):
    """The stored `ClusterState`, or None (none stored, or torn)."""
    import numpy as np

    from artsim_pipeline.core.clusters import ClusterState

    state = _load_state(storage, CLUSTERS_STATE_KEY, ("labels.parquet", "centroids.npy"))
    if state is None:
        return None
    files, info = state
    centroids = np.load(io.BytesIO(files["centroids.npy"]), allow_pickle=False)
    return ClusterState(pl.read_parquet(io.BytesIO(files["labels.parquet"])), centroids, info)
