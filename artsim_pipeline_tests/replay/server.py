"""A local replay server that stands in for the museum APIs of the source registry in tests.

These machines have no internet, and the live APIs misbehave in ways a pipeline must survive
(the Met firewall answers bursts with 403 and blocks the client, servers time out, connections
break mid-body). :class:`ReplayServer` serves real recorded records (see
``shared/data/README.md``) over HTTP on ``127.0.0.1`` with the same routes and envelopes as

* the Met Collection API, ``https://collectionapi.metmuseum.org/public/collection/v1``
  (``/objects``, ``/objects/{id}``, ``/departments``, ``/search``), and
* the SMK Open API, ``https://api.smk.dk/api/v1`` (``/art/search/``, ``/art/?object_number=``),

* every other API source of the registry (``core/sources.py``) through its paged routes in
  ``replay/paged.py`` (Cleveland under ``/cma/api``, the Art Institute of Chicago under
  ``/aic/api/v1``); ``server.base_urls`` maps each registry key to its root, and a registry API
  source without replay routes is refused when the server starts,

plus the image hosts (``/images/met/...``, ``/images/smk/...``, ``/images/cma/...``,
``/iiif/<id>/full/<size>/0/default.jpg``). Image URLs inside served records are rewritten to point at this server, and the
images are small deterministic PNGs (or whatever ``image_bytes`` returns).

Faults are programmable at run time (``server.faults.add("429", r"/objects/\\d+", count=2)``)
and every request is logged (``server.requests``, ``server.count(regex)``).

Usage::

    with ReplayServer(load_shared_met_records(limit=50), load_shared_smk_records()) as srv:
        requests.get(f"{srv.met_base_url}/objects/436535").json()
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "Fault",
    "FaultRegistry",
    "RawJson",
    "ReplayServer",
    "RequestRecord",
    "default_image_bytes",
    "load_shared_departments",
    "load_shared_met_records",
    "load_shared_smk_records",
    "shared_data_dir",
]

MET_PREFIX = "/public/collection/v1"
SMK_PREFIX = "/api/v1"
SMK_MAX_ROWS = 2000
SMK_DEFAULT_ROWS = 10

# Record department names that differ from the names in /departments.
MET_DEPARTMENT_ALIASES = {
    "Modern and Contemporary Art": "Modern Art",
    "Robert Lehman Collection": "The Robert Lehman Collection",
}

# The documented /departments body, used when the shared data directory is not available.
_FALLBACK_DEPARTMENTS: dict[str, Any] = {
    "departments": [
        {"departmentId": i, "displayName": n}
        for i, n in [
            (1, "American Decorative Arts"),
            (3, "Ancient Near Eastern Art"),
            (4, "Arms and Armor"),
            (5, "Arts of Africa, Oceania, and the Americas"),
            (6, "Asian Art"),
            (7, "The Cloisters"),
            (8, "The Costume Institute"),
            (9, "Drawings and Prints"),
            (10, "Egyptian Art"),
            (11, "European Paintings"),
            (12, "European Sculpture and Decorative Arts"),
            (13, "Greek and Roman Art"),
            (14, "Islamic Art"),
            (15, "The Robert Lehman Collection"),
            (16, "The Libraries"),
            (17, "Medieval Art"),
            (18, "Musical Instruments"),
            (19, "Photographs"),
            (21, "Modern Art"),
        ]
    ]
}

# What the Met's firewall (Akamai) answers when it blocks a client.
FIREWALL_403_HTML = (
    "<HTML><HEAD>\n<TITLE>Access Denied</TITLE>\n</HEAD><BODY>\n<H1>Access Denied</H1>\n \n"
    "You don't have permission to access \"http&#58;&#47;&#47;collectionapi&#46;metmuseum&#46;"
    "org&#47;public&#47;collection&#47;v1&#47;objects\" on this server.<P>\n"
    "Reference&#32;&#35;18&#46;replay\n</BODY>\n</HTML>\n"
)


# --------------------------------------------------------------------------------------------
# Shared recorded data
# --------------------------------------------------------------------------------------------


def shared_data_dir() -> Path:
    """The shared data directory: ``$ARTSIM_SHARED_DATA`` or ``<repo>/../shared/data`` (`settings`)."""
    from artsim_pipeline import settings

    return settings.shared_data_dir()


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_shared_met_records(limit: int | None = None) -> list[dict]:
    """Met ``/objects/{id}`` records from the shared data, unique by ``objectID``.

    The four records in ``objects_exact.jsonl`` (exactly as the API returned them) come first
    and win over their flattened copies in ``objects.jsonl``; the rest keep file order (for
    repeated ids there, the latest ``metadataDate`` wins). ``limit`` keeps the first N.
    """
    met = shared_data_dir() / "met"
    exact = _read_jsonl(met / "objects_exact.jsonl")
    by_id: dict[int, dict] = {r["objectID"]: r for r in exact}
    exact_ids = set(by_id)
    for rec in _read_jsonl(met / "objects.jsonl"):
        oid = rec["objectID"]
        if oid in exact_ids:
            continue
        old = by_id.get(oid)
        if old is None or _parse_iso(rec.get("metadataDate")) > _parse_iso(old.get("metadataDate")):
            by_id[oid] = rec
    records = list(by_id.values())
    return records if limit is None else records[:limit]


def load_shared_smk_records() -> list[dict]:
    """The unique SMK items in ``smk/responses/*.json``, sorted by ``object_number``.

    Both search envelopes and single-object bodies carry ``items``; when one object appears
    several times (e.g. KMS1 in 2019 and 2026) the item with the latest ``modified`` wins.
    """
    by_number: dict[str, dict] = {}
    for path in sorted((shared_data_dir() / "smk" / "responses").glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        for item in body.get("items") or []:
            num = item.get("object_number")
            if num is None:
                continue
            old = by_number.get(num)
            if old is None or _parse_iso(item.get("modified")) > _parse_iso(old.get("modified")):
                by_number[num] = item
    return [by_number[k] for k in sorted(by_number)]


def load_shared_departments() -> dict[str, Any]:
    """The Met ``/departments`` body from the shared data (the documented list if absent)."""
    path = shared_data_dir() / "met" / "responses" / "departments.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return copy.deepcopy(_FALLBACK_DEPARTMENTS)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

_MIN_DT = datetime.min.replace(tzinfo=timezone.utc)


def _parse_iso(value: str | None) -> datetime:
    """Parse an API timestamp ("2023-02-07T04:46:51.34Z", 0-3 fractional digits, or a date)."""
    if not value:
        return _MIN_DT
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return _MIN_DT
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _utc_now_iso() -> str:
    """The current UTC time in the Met's ``metadataDate`` style (millisecond precision)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


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


# --------------------------------------------------------------------------------------------
# Faults and the request log
# --------------------------------------------------------------------------------------------

_FAULT_PARAMS: dict[str, dict[str, Any]] = {
    "403": {},
    "firewall": {"burst": 30, "window_s": 1.0, "block_s": 30.0},
    "rate_firewall": {"rate": 5.0, "burst": 10, "block_s": 20.0, "retry_after": False},
    "429": {"retry_after": 1},
    "500": {"retry_after": None},
    "503": {"retry_after": None},
    "timeout": {"delay_s": 5.0},
    "truncated": {},
    "corrupt_image": {},
    "reset": {},
}


@dataclass
class Fault:
    """One programmed fault. ``count`` is what is left (None = unlimited); ``hits`` what was used."""

    kind: str
    path_pattern: str
    count: int | None
    params: dict[str, Any]
    hits: int = 0
    _regex: re.Pattern = field(init=False, repr=False)
    # firewall state
    _arrivals: deque = field(default_factory=deque, init=False, repr=False)
    _blocked_until: float = field(default=0.0, init=False, repr=False)
    # rate_firewall state: a token bucket (None: full)
    _tokens: float | None = field(default=None, init=False, repr=False)
    _last: float = field(default=0.0, init=False, repr=False)
    blocks: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path_pattern)

    def matches(self, path: str) -> bool:
        """Whether the request path (with query string) matches ``path_pattern`` (re.search)."""
        return self._regex.search(path) is not None

    @property
    def blocking(self) -> bool:
        """For a firewall fault: whether it is blocking clients right now."""
        return time.monotonic() < self._blocked_until

    @property
    def block_remaining_s(self) -> float:
        return max(0.0, self._blocked_until - time.monotonic())

    @property
    def sustainable_rate(self) -> float | None:
        """For a rate firewall: the request rate it lets through forever."""
        return float(self.params["rate"]) if self.kind == "rate_firewall" else None

    def _rate_admits(self, now: float) -> bool:
        """Rate firewall: take a token (True), or start a block (False). Caller holds the lock."""
        rate, burst = float(self.params["rate"]), float(self.params["burst"])
        tokens = burst if self._tokens is None else min(burst, self._tokens + (now - self._last) * rate)
        self._last = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        self._blocked_until = now + float(self.params["block_s"])
        self.blocks += 1
        return False


class FaultRegistry:
    """Thread-safe list of programmed faults, consulted once per request.

    Firewall faults are checked first (they never run out); then the first other fault whose
    pattern matches and whose count is not used up applies, and its count drops by one.
    ``corrupt_image`` faults only apply to image requests.
    """

    KINDS = tuple(_FAULT_PARAMS)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind: str, path_pattern: str = ".*", count: int | None = 1, **params: Any) -> Fault:
        """Program a fault for the next ``count`` requests whose path matches ``path_pattern``.

        Kinds and their parameters (defaults in brackets):

        * ``"403"``: 403 with the firewall's HTML body.
        * ``"firewall"``: more than ``burst`` [30] matching requests within ``window_s`` [1.0]
          block every matching request with 403 for ``block_s`` [30.0] seconds; never used up.
        * ``"rate_firewall"``: a token bucket of ``rate`` [5.0] requests/s and ``burst`` [10];
          a request that finds it empty blocks every matching request with 403 for ``block_s``
          [20.0] seconds (requests during the block are refused and do not extend it; the
          bucket refills meanwhile). With ``retry_after`` [False] the 403 says how long is left.
          Its sustainable rate is ``rate``; never used up.
        * ``"429"``: 429 with ``Retry-After: retry_after`` [1].
        * ``"500"`` / ``"503"``: server errors (``Retry-After`` only if ``retry_after`` given).
        * ``"timeout"``: wait ``delay_s`` [5.0] before answering normally.
        * ``"truncated"``: 200 with the full ``Content-Length`` but half the body, then close.
        * ``"corrupt_image"``: image requests only: 200 with bytes that are no image.
        * ``"reset"``: close the connection (TCP reset) without any response.

        ``count=None`` keeps the fault until :meth:`clear`. Unknown kinds raise ``ValueError``,
        unknown parameters ``TypeError``.
        """
        kind = str(kind)
        if kind not in _FAULT_PARAMS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {self.KINDS}")
        unknown = set(params) - set(_FAULT_PARAMS[kind])
        if unknown:
            raise TypeError(f"fault {kind!r} takes no parameter(s) {sorted(unknown)}")
        if kind in ("firewall", "rate_firewall"):
            count = None
        elif count is not None and count < 1:
            raise ValueError("count must be >= 1 (or None for unlimited)")
        fault = Fault(kind, path_pattern, count, {**_FAULT_PARAMS[kind], **params})
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    @property
    def active(self) -> list[Fault]:
        """A snapshot of the faults still programmed."""
        with self._lock:
            return list(self._faults)

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def select(self, path: str, is_image: bool) -> Fault | None:
        """The fault that applies to this request (consuming one use), or None."""
        now = time.monotonic()
        with self._lock:
            for f in self._faults:
                if f.kind not in ("firewall", "rate_firewall") or not f.matches(path):
                    continue
                if now < f._blocked_until:
                    f.hits += 1
                    return f
                if f.kind == "rate_firewall":
                    if not f._rate_admits(now):
                        f.hits += 1
                        return f
                    continue
                f._arrivals.append(now)
                while f._arrivals and f._arrivals[0] <= now - f.params["window_s"]:
                    f._arrivals.popleft()
                if len(f._arrivals) > f.params["burst"]:
                    f._blocked_until = now + f.params["block_s"]
                    f._arrivals.clear()
                    f.hits += 1
                    return f
            for f in self._faults:
                if f.kind in ("firewall", "rate_firewall") or not f.matches(path):
                    continue
                if f.kind == "corrupt_image" and not is_image:
                    continue
                f.hits += 1
                if f.count is not None:
                    f.count -= 1
                    if f.count <= 0:
                        self._faults.remove(f)
                return f
        return None


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


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


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


_MET_OBJECT_RE = re.compile(r"^/objects/([^/]+)/?$")
_IIIF_RE = re.compile(r"^/iiif/(.+)/full/([^/]+)/0/default\.(jpg|png)$")
_SMK_FILTER_RE = re.compile(r"\[([^:\[\]]+):([^\]]*)\]")


class ReplayServer(ThreadingHTTPServer):
    """A threaded HTTP server on ``127.0.0.1:<random port>`` replaying the Met and SMK APIs.

    It starts serving in a background daemon thread as soon as it is constructed; use it as a
    context manager or call :meth:`stop`.
    """

    daemon_threads = True
    block_on_close = False  # stop() must not wait for handlers sleeping in a "timeout" fault
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        met_records: Iterable[dict] = (),
        smk_records: Iterable[dict] = (),
        latency_s: float = 0.0,
        image_bytes: Callable[[str], bytes] | None = None,
        departments: dict[str, Any] | None = None,
        records: Mapping[str, Iterable[dict]] | None = None,
    ) -> None:
        """``records``: the records of the other API sources by registry key (``{"cma": [...]}``)."""
        from artsim_pipeline.core.sources import API_SOURCES
        from artsim_pipeline_tests.replay.paged import PAGED_APIS

        unserved = [key for key in API_SOURCES if key not in ("met", "smk") and key not in PAGED_APIS]
        if unserved:
            raise ValueError(f"the replay server has no routes for API source(s) {', '.join(unserved)} (replay/paged.py)")
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port: int = self.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.met_base_url = self.base_url + MET_PREFIX
        self.smk_base_url = self.base_url + SMK_PREFIX
        self.apis = {key: cls(key, prefix, id_field) for key, (prefix, id_field, cls, _) in PAGED_APIS.items()}
        for key, api in self.apis.items():
            api.base_url = self.base_url
            for record in (records or {}).get(key, ()):
                api.set_record(record)
        #: registry key -> API root on this server
        self.base_urls: dict[str, str] = {"met": self.met_base_url, "smk": self.smk_base_url,
                                          **{key: self.base_url + api.prefix for key, api in self.apis.items()}}
        self.latency_s = float(latency_s)
        self.image_bytes: Callable[[str], bytes] = image_bytes or default_image_bytes
        self.faults = FaultRegistry()
        self.requests: list[RequestRecord] = []
        self.not_a_valid_object_ids: set[int] = set()
        # poison: Met ids answered with these exact bytes (200), SMK entries listed after the
        # keyed items exactly as given (a `RawJson` is spliced into the page body as is)
        self.met_bodies: dict[int, bytes] = {}
        self.smk_extra_listing: list[Any] = []

        self._lock = threading.RLock()  # records and request log
        self._stop_event = threading.Event()
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._stopped = False

        self.departments = departments if departments is not None else load_shared_departments()
        self._department_ids = {
            d["displayName"]: int(d["departmentId"]) for d in self.departments.get("departments", [])
        }
        self._departments_body = _json_bytes(self.departments)

        # Met: id -> [verbatim record, served (rewritten) JSON or None until first asked, index]
        # Constructor records are copied shallowly (only top-level keys are ever replaced).
        self._met: dict[int, list] = {}
        for rec in met_records:
            self._store_met(dict(rec))
        # SMK: object_number -> (verbatim item, rewritten item)
        self._smk: dict[str, tuple[dict, dict]] = {}
        for item in smk_records:
            self.set_smk_record(item)

        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"replay-{self.port}", daemon=True
        )
        self._thread.start()

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "ReplayServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving, drop open connections and wake sleeping handlers. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stop_event.set()
        self.shutdown()
        self.server_close()
        with self._lock:
            conns = list(self._connections)
            threads = list(self._handler_threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        deadline = time.monotonic() + 2.0
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    # socketserver hooks: track connections and handler threads so stop() can end them.
    def get_request(self):  # type: ignore[override]
        conn, addr = super().get_request()
        # http.server writes headers and body separately: without TCP_NODELAY a kept-alive
        # client waits ~40 ms for each body (Nagle + delayed ACK), which no real API does.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._connections.add(conn)
        return conn, addr

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[override]
        me = threading.current_thread()
        with self._lock:
            self._handler_threads.add(me)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._handler_threads.discard(me)

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        pass  # broken client connections are part of the game; nothing to print

    # ---- collection management -------------------------------------------------------------

    def set_met_record(self, record: dict, *, touch: bool = True) -> dict:
        """Add or replace a Met record (deep-copied); returns a copy of the stored record.

        With ``touch`` (the default), a record that is new or differs from the stored one
        (ignoring ``metadataDate``) gets ``metadataDate`` = now, as the real API does when an
        object changes, so incremental ``metadataDate`` queries see it. Served copies have their
        image URLs rewritten; the stored record stays verbatim.
        """
        rec = json.loads(_json_bytes(record))
        with self._lock:
            old = self._met.get(int(rec["objectID"]))
            if touch:
                strip = lambda r: {k: v for k, v in r.items() if k != "metadataDate"}  # noqa: E731
                if old is None or strip(old[0]) != strip(rec):
                    rec["metadataDate"] = _utc_now_iso()
                else:
                    rec["metadataDate"] = old[0].get("metadataDate")
            self._store_met(rec)
        return json.loads(_json_bytes(rec))

    def _store_met(self, rec: dict) -> None:
        """Index a record; its served JSON is rendered lazily on first request."""
        title = rec.get("title") or ""
        dept_name = rec.get("department") or ""
        dept_id = self._department_ids.get(MET_DEPARTMENT_ALIASES.get(dept_name, dept_name))
        index = (_parse_iso(rec.get("metadataDate")), dept_id, title.lower(), bool(rec.get("primaryImage")))
        with self._lock:
            self._met[int(rec["objectID"])] = [rec, None, index]

    def set_met_body(self, object_id: int, body: bytes) -> None:
        """Answer ``/objects/{object_id}`` with exactly ``body`` (200), whatever it holds (deeply
        nested JSON, invalid UTF-8...); the id is listed by ``/objects`` (as modified now)."""
        object_id = int(object_id)
        with self._lock:
            if object_id not in self._met:
                self._store_met({"objectID": object_id, "metadataDate": _utc_now_iso()})
            self.met_bodies[object_id] = bytes(body)

    def remove_met_record(self, object_id: int) -> bool:
        """Remove a Met record (it then answers 404); returns whether it was there."""
        with self._lock:
            return self._met.pop(int(object_id), None) is not None

    def met_record(self, object_id: int) -> dict | None:
        """A copy of the stored verbatim Met record, or None."""
        with self._lock:
            entry = self._met.get(int(object_id))
        return json.loads(_json_bytes(entry[0])) if entry else None

    @property
    def met_ids(self) -> list[int]:
        """The Met object ids served, ascending."""
        with self._lock:
            return sorted(self._met)

    def set_smk_record(self, item: dict) -> None:
        """Add or replace an SMK item (keyed by ``object_number``)."""
        item = copy.deepcopy(item)
        with self._lock:
            self._smk[str(item["object_number"])] = (item, self._rewrite_smk(item))

    def remove_smk_record(self, object_number: str) -> bool:
        """Remove an SMK item; returns whether it was there."""
        with self._lock:
            return self._smk.pop(object_number, None) is not None

    def set_record(self, source: str, record: dict) -> None:
        """Add or replace a record of a paged API source (``cma``, ``aic``), keyed by its id."""
        with self._lock:
            self.apis[source].set_record(record)

    def remove_record(self, source: str, record_id: str) -> bool:
        """Remove a record of a paged API source; returns whether it was there."""
        with self._lock:
            return self.apis[source].remove_record(record_id)

    def record(self, source: str, record_id: str) -> dict | None:
        """A copy of a stored record of a paged API source, or None."""
        with self._lock:
            found = self.apis[source].records.get(str(record_id))
        return copy.deepcopy(found) if found is not None else None

    # ---- request log -----------------------------------------------------------------------

    def count(self, path_regex: str = ".*", status: int | None = None) -> int:
        """How many logged requests have a path (with query) matching ``path_regex`` (re.search)."""
        rx = re.compile(path_regex)
        with self._lock:
            return sum(1 for r in self.requests if rx.search(r.path) and (status is None or r.status == status))

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self.requests.clear()

    def _log(self, method: str, path: str, status: int, ts: float) -> None:
        with self._lock:
            self.requests.append(RequestRecord(method, path, status, ts))

    # ---- URL rewriting ---------------------------------------------------------------------

    def _rewrite_met(self, rec: dict) -> dict:
        out = dict(rec)

        def fix(url: Any) -> Any:
            if isinstance(url, str):
                for host in ("https://images.metmuseum.org/", "http://images.metmuseum.org/"):
                    if url.startswith(host):
                        return f"{self.base_url}/images/met/{url[len(host):]}"
            return url

        for key in ("primaryImage", "primaryImageSmall"):
            if key in out:
                out[key] = fix(out[key])
        if isinstance(out.get("additionalImages"), list):
            out["additionalImages"] = [fix(u) for u in out["additionalImages"]]
        return out

    def _rewrite_smk(self, item: dict) -> dict:
        out = dict(item)
        for key in ("image_thumbnail", "image_native"):
            url = out.get(key)
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                parts = urlsplit(url)
                path = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
                out[key] = f"{self.base_url}/images/smk/{path}"
        iiif = out.get("image_iiif_id")
        if isinstance(iiif, str):
            for prefix in ("https://iip.smk.dk/iiif/jp2/", "http://iip.smk.dk/iiif/jp2/"):
                if iiif.startswith(prefix):
                    out["image_iiif_id"] = f"{self.base_url}/iiif/{iiif[len(prefix):]}"
        return out

    # ---- dispatch --------------------------------------------------------------------------

    def _dispatch(self, h: _Handler, head: bool = False, allowed: bool = True) -> None:
        """Apply latency and faults, route the request, log it and write the answer."""
        arrived = time.time()
        raw = h.path
        path_only = raw.split("?", 1)[0]
        is_image = path_only.startswith(("/images/", "/iiif/"))
        if self.latency_s > 0:
            self._stop_event.wait(self.latency_s)

        fault = self.faults.select(raw, is_image)
        kind = fault.kind if fault else None

        if kind == "reset":
            self._log(h.command, raw, 0, arrived)
            self._reset(h)
            return

        if kind in ("403", "firewall", "rate_firewall"):
            resp = _Response(403, FIREWALL_403_HTML.encode(), "text/html")
            if kind == "rate_firewall" and fault.params.get("retry_after"):
                resp.headers["Retry-After"] = str(max(1, round(fault.block_remaining_s + 0.5)))
        elif kind == "429":
            resp = _Response(429, _json_bytes({"message": "Too Many Requests"}),
                             headers={"Retry-After": str(fault.params["retry_after"])})
        elif kind in ("500", "503"):
            msg = "Internal Server Error" if kind == "500" else "Service Unavailable"
            resp = _Response(int(kind), _json_bytes({"message": msg}))
            if fault.params.get("retry_after") is not None:
                resp.headers["Retry-After"] = str(fault.params["retry_after"])
        elif not allowed:
            resp = _Response(405, _json_bytes({"message": "Method Not Allowed"}), headers={"Allow": "GET, HEAD"})
        else:
            try:
                resp = self._route(raw)
            except Exception as exc:  # a bug here should show up as a 500, not a hung client
                resp = _Response(500, _json_bytes({"message": f"replay server error: {exc!r}"}))
            if kind == "corrupt_image" and resp.status == 200:
                garbage = hashlib.sha256(raw.encode()).digest() * 8
                resp = _Response(200, b"\x00\x13NOTANIMAGE" + garbage, resp.content_type)

        self._log(h.command, raw, resp.status, arrived)
        if kind == "timeout":
            self._stop_event.wait(float(fault.params["delay_s"]))
        self._send(h, resp, head=head, truncated=(kind == "truncated"))

    @staticmethod
    def _send(h: _Handler, resp: _Response, head: bool = False, truncated: bool = False) -> None:
        h.send_response(resp.status)
        h.send_header("Content-Type", resp.content_type)
        h.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            h.send_header(k, v)
        if truncated:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if head:
            return
        h.wfile.write(resp.body[: len(resp.body) // 2] if truncated else resp.body)
        h.wfile.flush()

    @staticmethod
    def _reset(h: _Handler) -> None:
        """Drop the connection with a TCP reset and no response at all."""
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()  # the real close (RST) happens when the handler's files close
        except OSError:
            pass

    def _route(self, raw: str) -> _Response:
        """Answer a request that no fault intercepted."""
        # http.server decodes the request line as latin-1; recover raw UTF-8 bytes if any.
        try:
            raw = raw.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
        parts = urlsplit(raw)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)

        if path.startswith(MET_PREFIX + "/") or path == MET_PREFIX:
            return self._route_met(path[len(MET_PREFIX):], query)
        if path.startswith(SMK_PREFIX + "/"):
            return self._route_smk(path[len(SMK_PREFIX):], query)
        if path.startswith("/images/") or path.startswith("/iiif/"):
            return self._route_image(path)
        for api in self.apis.values():
            if path.startswith(api.prefix + "/"):
                return self._route_paged(api, path[len(api.prefix):], query)
        return _Response(404, _json_bytes({"message": "Not Found"}))

    def _route_paged(self, api, sub: str, query: dict[str, list[str]]) -> _Response:
        with self._lock:
            status, body = api.route(sub, query)
        if status == 200 and isinstance(body, dict) and any(isinstance(i, RawJson) for i in body.get("data") or []):
            items = body["data"]
            parts = [item.data if isinstance(item, RawJson) else _json_bytes(item) for item in items]
            head = _json_bytes({k: v for k, v in body.items() if k != "data"})[:-1]
            return _Response(200, head + (b'"data": [' if head == b"{" else b', "data": [') + b", ".join(parts) + b"]}")
        return _Response(status, _json_bytes(body))

    # ---- Met -------------------------------------------------------------------------------

    def _route_met(self, sub: str, query: dict[str, list[str]]) -> _Response:
        if sub in ("/objects", "/objects/"):
            return self._met_objects(query)
        m = _MET_OBJECT_RE.match(sub)
        if m:
            return self._met_object(m.group(1))
        if sub in ("/departments", "/departments/"):
            return _Response(200, self._departments_body)
        if sub in ("/search", "/search/"):
            return self._met_search(query)
        return _Response(404, _json_bytes({"message": "Not Found"}))

    def _met_object(self, id_text: str) -> _Response:
        try:
            oid = int(id_text)
        except ValueError:
            return _Response(404, _json_bytes({"message": "ObjectID not found"}))
        if oid in self.not_a_valid_object_ids:
            return _Response(404, _json_bytes({"message": "Not a valid object"}))
        with self._lock:
            entry = self._met.get(oid)
        if entry is None:
            return _Response(404, _json_bytes({"message": "ObjectID not found"}))
        poison = self.met_bodies.get(oid)
        if poison is not None:
            return _Response(200, poison)
        body = entry[1]
        if body is None:  # render once; a concurrent duplicate render is harmless
            body = entry[1] = _json_bytes(self._rewrite_met(entry[0]))
        return _Response(200, body)

    @staticmethod
    def _id_envelope(ids: list[int]) -> _Response:
        ids = sorted(ids)
        return _Response(200, _json_bytes({"total": len(ids), "objectIDs": ids or None}))

    def _met_objects(self, query: dict[str, list[str]]) -> _Response:
        since: datetime | None = None  # a full timestamp: compare exactly
        since_date: date | None = None  # a date (the documented form): on or after that day
        text = query.get("metadataDate", [""])[0].strip()
        if text:
            try:
                if "T" in text:
                    since = datetime.fromisoformat(text.replace("Z", "+00:00"))
                    since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
                else:
                    since_date = date.fromisoformat(text)
            except ValueError:
                return _Response(400, _json_bytes({"message": "metadataDate must be YYYY-MM-DD"}))
        dept_ids: set[int] | None = None
        if query.get("departmentIds", [""])[0]:
            try:
                dept_ids = {int(x) for x in re.split(r"[|,]", query["departmentIds"][0]) if x.strip()}
            except ValueError:
                return _Response(400, _json_bytes({"message": "departmentIds must be numbers separated by |"}))
        with self._lock:
            entries = [(oid, e[2]) for oid, e in self._met.items()]
        ids = []
        for oid, (modified, dept_id, _title, _img) in entries:
            if since_date is not None and modified.date() < since_date:
                continue
            if since is not None and modified < since:
                continue
            if dept_ids is not None and dept_id not in dept_ids:
                continue
            ids.append(oid)
        return self._id_envelope(ids)

    def _met_search(self, query: dict[str, list[str]]) -> _Response:
        q = query.get("q", [""])[0].strip().lower()
        has_images = query.get("hasImages", [""])[0].lower() == "true"
        with self._lock:
            entries = [(oid, e[2]) for oid, e in self._met.items()]
        ids = [
            oid
            for oid, (_m, _d, title, has_img) in entries
            if (q in title or q == "*") and (has_img or not has_images)
        ]
        return self._id_envelope(ids)

    # ---- SMK -------------------------------------------------------------------------------

    def _route_smk(self, sub: str, query: dict[str, list[str]]) -> _Response:
        if sub in ("/art/search/", "/art/search"):
            return self._smk_search(query)
        if sub in ("/art/", "/art"):
            number = query.get("object_number", [None])[0]
            if number is None:
                return _Response(400, _json_bytes({"message": "object_number is required"}))
            with self._lock:
                entry = self._smk.get(number)
            return _Response(200, _json_bytes({"items": [entry[1]] if entry else []}))
        return _Response(404, _json_bytes({"message": "Not Found"}))

    @staticmethod
    def _smk_filter_ok(item: dict, filters: list[tuple[str, str]]) -> bool:
        for key, want in filters:
            have = item.get(key)
            if want.lower() in ("true", "false"):
                if bool(have) != (want.lower() == "true"):
                    return False
            elif str(have) != want:
                return False
        return True

    def _smk_search(self, query: dict[str, list[str]]) -> _Response:
        keys = query.get("keys", ["*"])[0].strip() or "*"
        try:
            offset = max(0, int(query.get("offset", ["0"])[0] or 0))
            rows = int(query.get("rows", [str(SMK_DEFAULT_ROWS)])[0] or SMK_DEFAULT_ROWS)
        except ValueError:
            return _Response(400, _json_bytes({"message": "offset and rows must be integers"}))
        rows = max(0, min(rows, SMK_MAX_ROWS))
        filters = [(k.strip(), v.strip()) for f in query.get("filters", []) for k, v in _SMK_FILTER_RE.findall(f)]
        with self._lock:
            items = [self._smk[k] for k in sorted(self._smk)]
        needle = keys.lower()
        found = []
        for verbatim, served in items:
            if keys != "*":
                titles = [str(t.get("title", "")) for t in verbatim.get("titles") or [] if isinstance(t, dict)]
                if not any(needle in t.lower() for t in titles):
                    continue
            if not self._smk_filter_ok(verbatim, filters):
                continue
            found.append(served)
        found += self.smk_extra_listing
        page = found[offset: offset + rows]
        body = {
            "offset": offset,
            "rows": rows,
            "found": len(found),
            "items": page,
            "facets": {},
            "facets_ranges": {},
            "autocomplete": [],
        }
        if any(isinstance(item, RawJson) for item in page):
            parts = [item.data if isinstance(item, RawJson) else _json_bytes(item) for item in page]
            head = _json_bytes({k: v for k, v in body.items() if k != "items"})[:-1]
            return _Response(200, head + b', "items": [' + b", ".join(parts) + b"]}")
        return _Response(200, _json_bytes(body))

    # ---- images ----------------------------------------------------------------------------

    def _route_image(self, path: str) -> _Response:
        decoded = unquote(path)
        if decoded.startswith("/iiif/") and not _IIIF_RE.match(decoded):
            return _Response(404, _json_bytes({"message": "Not Found"}))
        data = self.image_bytes(decoded)
        if not data:
            return _Response(404, _json_bytes({"message": "Not Found"}))
        return _Response(200, data, _sniff_image_type(data))
