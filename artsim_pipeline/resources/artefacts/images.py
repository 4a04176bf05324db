"""Images (content-addressed) and the small JSON state of the fetch cursors.

Part of the storage layout: `resources/artefacts/__init__.py` has the table of keys."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from artsim_pipeline.resources.storage import ArtsimStorage


# -- images ------------------------------------------------------------------------------------------

IMAGES_PREFIX = "images"


def write_image(storage: ArtsimStorage, relpath: str, content: bytes) -> None:
    """Store an image under `images/<relpath>` (`core.images.image_relpath`: content-addressed,
    so an existing file already holds these bytes and is left alone)."""
    key = f"{IMAGES_PREFIX}/{relpath}"
    if not storage.objects.exists(key):
        storage.objects.write_bytes(key, content)


def image_file(storage: ArtsimStorage, relpath: str) -> Path | None:
    """A local path to the stored image (cached from S3 when remote), or None."""
    return storage.local_file(f"{IMAGES_PREFIX}/{relpath}")


def read_image(storage: ArtsimStorage, relpath: str) -> bytes | None:
    """The stored image's bytes (through the local cache when remote), or None."""
    path = image_file(storage, relpath)
    return path.read_bytes() if path is not None else None


def stored_images(storage: ArtsimStorage) -> set[str]:
    """The `relpath` of every stored image."""
    return {key[len(IMAGES_PREFIX) + 1:] for key in storage.objects.list_keys(IMAGES_PREFIX)}


def local_images_dir(home: str | os.PathLike[str]) -> Path:
    """The folder of the images under a local home (`$ARTSIM_HOME/images`)."""
    return Path(home) / IMAGES_PREFIX


# -- small JSON state (fetch cursors) ------------------------------------------------------------------


def read_state(storage: ArtsimStorage, name: str) -> dict[str, Any]:
    data = storage.objects.read_bytes(f"state/{name}.json")
    return json.loads(data) if data else {}


def write_state(storage: ArtsimStorage, name: str, state: dict[str, Any]) -> None:
    storage.objects.write_bytes(f"state/{name}.json", json.dumps(state, indent=2, sort_keys=True).encode("utf-8"))
