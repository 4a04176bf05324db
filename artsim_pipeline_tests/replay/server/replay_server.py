"""`ReplayServer`: the threaded HTTP server on 127.0.0.1 (lifecycle, connection tracking, the
request log, dispatch through faults to the routes of each museum and the image hosts)."""

from __future__ import annotations

import copy
import re
import socket
import struct
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from artsim_pipeline_tests.replay.server.data import load_shared_departments
from artsim_pipeline_tests.replay.server.faults import FaultRegistry, corrupt_image_answer, fault_answer
from artsim_pipeline_tests.replay.server.met import MET_PREFIX, MetRoutes
from artsim_pipeline_tests.replay.server.smk import SMK_PREFIX, SmkRoutes
from artsim_pipeline_tests.replay.server.wire import (
    RawJson,
    RequestRecord,
    _Handler,
    _json_bytes,
    _Response,
    _sniff_image_type,
    default_image_bytes,
    splice_json,
)

_IIIF_RE = re.compile(r"^/iiif/(.+)/full/([^/]+)/0/default\.(jpg|png)$")


class ReplayServer(MetRoutes, SmkRoutes, ThreadingHTTPServer):
    """A threaded HTTP server on ``127.0.0.1:<random port>`` replaying the museum APIs: the Met
    (:class:`MetRoutes`), SMK (:class:`SmkRoutes`) and the paged APIs of ``replay/paged.py``.

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

    # ---- records of the paged API sources (replay/paged.py) ------------------------------------

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

        resp = fault_answer(fault)
        if resp is None and not allowed:
            resp = _Response(405, _json_bytes({"message": "Method Not Allowed"}), headers={"Allow": "GET, HEAD"})
        elif resp is None:
            try:
                resp = self._route(raw)
            except Exception as exc:  # a bug here should show up as a 500, not a hung client
                resp = _Response(500, _json_bytes({"message": f"replay server error: {exc!r}"}))
            if kind == "corrupt_image" and resp.status == 200:
                resp = corrupt_image_answer(raw, resp)

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
            return _Response(200, splice_json(body, "data", body["data"]))
        return _Response(status, _json_bytes(body))

    # ---- images ----------------------------------------------------------------------------

    def _route_image(self, path: str) -> _Response:
        decoded = unquote(path)
        if decoded.startswith("/iiif/") and not _IIIF_RE.match(decoded):
            return _Response(404, _json_bytes({"message": "Not Found"}))
        data = self.image_bytes(decoded)
        if not data:
            return _Response(404, _json_bytes({"message": "Not Found"}))
        return _Response(200, data, _sniff_image_type(data))
