"""Images of `artsim serve`: ``GET /images/{sha256}`` serves ``images/<sha[:2]>/<sha>.<ext>`` of
the storage (through the local cache when it is S3); only a 64-digit hex sha (optionally with an
image extension) is accepted, so no path can escape."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from artsim_pipeline.resources import artefacts
from artsim_pipeline.web.site import SHA_RE, Site, api_error

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif"}
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}  # content-addressed: never changes


def image_router(site: Site, home: Path) -> APIRouter:
    """`/images/{name}` over the app's storage (local files under `home`, or the S3 cache)."""
    router = APIRouter()
    storage = site.state.storage
    images_root = artefacts.local_images_dir(home).resolve()

    @router.get("/images/{name:path}")
    def image(name: str):
        m = SHA_RE.match(name.lower())
        if not m:
            return api_error(400, "an image is addressed by its sha256 (64 hex digits)")
        sha = m.group(1)
        if storage.is_remote:  # content-addressed on S3: fetched once into the local cache
            for extension in dict.fromkeys(t.lstrip(".") for t in IMAGE_TYPES):
                cached = artefacts.image_file(storage, f"{sha[:2]}/{sha}.{extension}")
                if cached is not None:
                    return FileResponse(cached, media_type=IMAGE_TYPES[f".{extension}"], headers=IMMUTABLE)
            return api_error(404, "no such image")
        folder = images_root / sha[:2]
        for path in sorted(folder.glob(f"{sha}*")) if folder.is_dir() else []:
            if path.stem != sha and path.name != sha:
                continue
            resolved = path.resolve()
            if not resolved.is_file() or not resolved.is_relative_to(images_root):
                continue
            return FileResponse(resolved, media_type=IMAGE_TYPES.get(resolved.suffix.lower(), "application/octet-stream"),
                                headers=IMMUTABLE)
        return api_error(404, "no such image")

    return router
