"""Checking downloaded images, and the content-addressed name they are stored under (the storing
is `resources/artefacts.write_image`)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

# A web-size museum image is well under this; anything larger is a decompression bomb or a mistake.
DEFAULT_MAX_PIXELS = 40_000_000

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tif"}


@dataclass
class CheckedImage:
    sha256: str
    width: int
    height: int
    format: str
    extension: str


class ImageRejected(ValueError):
    """The bytes are not an image we accept; `status` is the one-word reason stored in `raw_images`."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_image(content: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> CheckedImage:
    """Decode `content` fully (Pillow) under a pixel limit; raise `ImageRejected` otherwise."""
    from PIL import Image

    if not content:
        raise ImageRejected("empty", "empty body")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as probe:
                width, height = probe.size
                fmt = probe.format or "unknown"
                if width * height > max_pixels:
                    raise ImageRejected("too_large", f"{width}x{height} exceeds the {max_pixels:,}-pixel limit")
                probe.load()  # a truncated or corrupt file fails here, not at `open`
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too_large", str(exc)) from exc
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageRejected("decode_error", f"{type(exc).__name__}: {exc}") from exc
    return CheckedImage(hashlib.sha256(content).hexdigest(), width, height, fmt, EXTENSIONS.get(fmt, "bin"))


def image_relpath(sha256: str, extension: str) -> str:
    """Where an image lives under the image root: two-level fan-out by hash."""
    return f"{sha256[:2]}/{sha256}.{extension}"


# Image embedding runs in chunks by the first hex digit of the image sha256 (16 values folded
# onto EMBEDDING_BUCKETS buckets), so chunks can run as separate, parallel Dagster runs.
EMBEDDING_BUCKETS = 8
EMBEDDING_BUCKET_KEYS = tuple(f"bucket{i}" for i in range(EMBEDDING_BUCKETS))


def sha_bucket(sha256: str) -> str:
    """The embedding chunk an image belongs to."""
    return f"bucket{int(sha256[0], 16) % EMBEDDING_BUCKETS}"
