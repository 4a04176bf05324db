"""What goes over the wire: JSON and image bodies, answers, the request log's rows, the handler."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from artsim_pipeline_tests.replay.server.replay_server import ReplayServer

def _json_bytes(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: served as its \\u escape, as a real API would
        return json.dumps(obj, ensure_ascii=True).encode("ascii")


def _sniff_image_type(data: bytes) -> str:
    """The content type matching an image's magic bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


_IMAGE_CACHE: dict[str, bytes] = {}
_IMAGE_CACHE_LOCK = threading.Lock()


def default_image_bytes(path: str, size: int = 64) -> bytes:
    """A small deterministic PNG for ``path``: an 8x8 grid of colours drawn from its hash.

    Different paths give different pixels; the same path always gives the same bytes.
    """
    key = f"{size}:{path}"
    with _IMAGE_CACHE_LOCK:
        cached = _IMAGE_CACHE.get(key)
    if cached is not None:
        return cached
    from PIL import Image  # local import: only needed when images are served

    cells = hashlib.shake_256(path.encode("utf-8")).digest(8 * 8 * 3)
    img = Image.frombytes("RGB", (8, 8), cells).resize((size, size), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    with _IMAGE_CACHE_LOCK:
        _IMAGE_CACHE[key] = data
    return data


@dataclass(frozen=True)
class RawJson:
    """Bytes spliced verbatim into a served JSON body (poison that `json.dumps` cannot make)."""

    data: bytes


class RequestRecord(NamedTuple):
    """One logged request: ``(method, path, status, timestamp)``.

    ``path`` is the path with query string as received (still percent-encoded); ``status`` is
    0 when the connection was reset without a response; ``timestamp`` is the arrival time
    (``time.time()``).
    """

    method: str
    path: str
    status: int
    timestamp: float


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to :meth:`ReplayServer._dispatch`."""

    protocol_version = "HTTP/1.1"
    server_version = "artsim-replay/1.0"
    timeout = 60  # idle keep-alive connections are dropped after this

    server: "ReplayServer"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.server._dispatch(self)

    def do_HEAD(self) -> None:  # noqa: N802
        self.server._dispatch(self, head=True)

    def _not_allowed(self) -> None:
        self.server._dispatch(self, allowed=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError):
            pass  # clients that time out or go away mid-answer are expected here

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the server keeps its own request log


def splice_json(body: dict, key: str, items: list) -> bytes:
    """``body`` as JSON with ``key`` holding ``items``, each a JSON value or a `RawJson` spliced
    in verbatim (poison that `json.dumps` cannot make)."""
    parts = [item.data if isinstance(item, RawJson) else _json_bytes(item) for item in items]
    head = _json_bytes({k: v for k, v in body.items() if k != key})[:-1]
    return head + (b'"' if head == b"{" else b', "') + key.encode() + b'": [' + b", ".join(parts) + b"]}"
