"""What stands between a hostile browser (or script) and the feedback journal of `artsim serve`.

- **Host**: only names this server answers to (loopback by default, plus the bound host and
  `ARTSIM_ALLOWED_HOSTS`); a DNS-rebinding page reaches the server under *its own* name, so a
  matching `Origin` alone proves nothing.
- **Origin**: a write must carry `Origin` equal to this server's own origin (scheme and the
  allowed Host); a missing `Origin` and `Origin: null` (sandboxed frames, some redirects) are
  refused. `Sec-Fetch-Site`, when sent, must be `same-origin`.
- **Session token**: the pages and the task API set an HttpOnly, SameSite=Strict session cookie;
  a write must echo the per-session token (HMAC of the session under a per-process secret) in
  the form or the `X-CSRF-Token` header: a page on another site can neither read nor compute it.
- **Tasks**: a judgment answers a task the server issued to that session (anchor and
  candidates kept server-side, single use), so no two indexed works can be posted as a pair.
- **Bodies**: the size is checked while reading (the declared length first, then the stream,
  stopped at the limit); JSON nested too deeply or holding lone surrogates is malformed (400).
- **Errors**: no filesystem path or storage URL is ever shown (`redact_paths`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import urlsplit

SESSION_COOKIE = "artsim_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


class BodyTooLarge(Exception):
    pass


class MalformedBody(ValueError):
    pass


# -- bodies -----------------------------------------------------------------------------------


async def read_body(request, limit: int) -> bytes:
    """The request body, refused (`BodyTooLarge`) as soon as it is known to exceed `limit`:
    from its Content-Length before reading, else while streaming (nothing past the limit is kept)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise MalformedBody("Content-Length is not a number")
        if int(declared) > limit:
            raise BodyTooLarge(int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedBody("the body holds a lone surrogate (\\ud800-\\udfff), which is not text") from None


def parse_json(body: bytes, max_depth: int = 20) -> Any:
    """Strict JSON: valid UTF-8, nested at most `max_depth` deep, no lone surrogates."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    # depth before parsing: the parser recurses, a deep body must not reach it
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                raise MalformedBody(f"JSON nested deeper than {max_depth} levels")
        elif ch in "]}":
            depth -= 1
    try:
        value = json.loads(text or "null")
    except (ValueError, RecursionError) as exc:
        raise MalformedBody(f"the body is not JSON: {exc}") from None
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, val in item.items():
                _check_text(key)
                stack.append(val)
    return value


def parse_form(body: bytes) -> dict[str, list[str]]:
    """An urlencoded form, strictly: UTF-8 percent-escapes only, no lone surrogates."""
    from urllib.parse import parse_qs

    try:
        text = body.decode("ascii")
        form = parse_qs(text, keep_blank_values=True, max_num_fields=50, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedBody(f"unreadable form: {exc}") from None
    for values in form.values():
        for v in values:
            _check_text(v)
    return form


# -- Host and Origin --------------------------------------------------------------------------------


def _split_host(value: str | None) -> tuple[str, int | None] | None:
    if not value or any(c in value for c in "/@\\ \t"):
        return None
    try:
        parts = urlsplit(f"//{value}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


class HostPolicy:
    """The names this server answers to (any port)."""

    def __init__(self, hosts: Iterable[str] = ()) -> None:
        self.hosts = {h.strip().lower().strip("[]") for h in (*LOOPBACK_HOSTS, *hosts) if h and h.strip()}
        self.hosts -= {"0.0.0.0", "::", ""}  # a wildcard bind is not a name a client may use

    def allows(self, host_header: str | None) -> bool:
        split = _split_host(host_header)
        return split is not None and split[0] in self.hosts


def cross_site_problem(headers, scheme: str, policy: HostPolicy) -> str | None:
    """Why a write is not provably same-origin (None: it is)."""
    host = headers.get("host")
    if not policy.allows(host):
        return "this server does not answer to that Host name"
    origin = headers.get("origin")
    if not origin or origin.strip().lower() == "null":
        return "a write must come from this site's own pages (Origin missing or null)"
    parts = urlsplit(origin.strip())
    own_host, own_port = _split_host(host) or ("", None)
    default = {"http": 80, "https": 443}.get(scheme)
    try:
        origin_port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return "cross-origin feedback is not accepted"
    if (parts.scheme, (parts.hostname or "").lower(), origin_port) != (scheme, own_host, own_port or default):
        return "cross-origin feedback is not accepted"
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return f"cross-site feedback is not accepted (Sec-Fetch-Site: {site})"
    return None


# -- sessions and tokens ------------------------------------------------------------------------


class Sessions:
    """Random session ids in a cookie; the CSRF token is an HMAC of the id under this process's secret."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def session_of(self, request) -> str | None:
        value = request.cookies.get(SESSION_COOKIE)
        return value if value and _SESSION_RE.match(value) else None

    def begin(self, request) -> tuple[str, bool]:
        """`(session id, is_new)`: the request's session, or a new one to `set_cookie`."""
        session = self.session_of(request)
        return (session, False) if session else (secrets.token_urlsafe(32), True)

    @staticmethod
    def set_cookie(response, session: str) -> None:
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/")

    def token(self, session: str) -> str:
        return hmac.new(self._secret, session.encode("ascii"), hashlib.sha256).hexdigest()

    def valid(self, session: str | None, token: Any) -> bool:
        return bool(session) and isinstance(token, str) and hmac.compare_digest(self.token(session), token)


@dataclass(frozen=True)
class Task:
    task_id: str
    session: str
    anchor_id: str
    candidate_ids: tuple[str, ...]
    issued_at: float


class TaskRegistry:
    """The feedback tasks this server issued, per session, each answerable once (in memory:
    behind several web hosts, route a session to one host)."""

    def __init__(self, max_tasks: int = 20_000, ttl_s: float = 24 * 3600, clock=time.monotonic) -> None:
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self._lock = threading.Lock()
        self.max_tasks, self.ttl_s, self._clock = max_tasks, ttl_s, clock

    def issue(self, session: str, anchor_id: str, candidate_ids: Iterable[str]) -> Task:
        now = self._clock()
        task = Task(secrets.token_urlsafe(18), session, anchor_id, tuple(candidate_ids), now)
        with self._lock:
            self._tasks[task.task_id] = task
            while self._tasks and (len(self._tasks) > self.max_tasks or next(iter(self._tasks.values())).issued_at < now - self.ttl_s):
                self._tasks.popitem(last=False)
        return task

    def get(self, task_id: Any, session: str | None) -> Task | None:
        if not isinstance(task_id, str) or session is None:
            return None
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None or task.session != session or task.issued_at < self._clock() - self.ttl_s:
            return None
        return task

    def consume(self, task_id: str) -> bool:
        """Mark a task answered; False when it already was (a concurrent double submit)."""
        with self._lock:
            return self._tasks.pop(task_id, None) is not None


# -- error texts ---------------------------------------------------------------------------------

_PATH_RE = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"()]+|(?<![\w.:/])(?:~|\.{1,2})?/[^\s'\"()]*[^\s'\"().,;:])")


def redact_paths(text: str) -> str:
    """`text` with every filesystem path and storage URL replaced by `<storage>`."""
    return _PATH_RE.sub("<storage>", text)
