"""Programmable faults: what the live APIs do to a client (firewall blocks, rate limits, server
errors, timeouts, truncated bodies, corrupt images, connection resets) and the answers they give."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from artsim_pipeline_tests.replay.server.wire import _json_bytes, _Response

# What the Met's firewall (Akamai) answers when it blocks a client.
FIREWALL_403_HTML = (
    "<HTML><HEAD>\n<TITLE>Access Denied</TITLE>\n</HEAD><BODY>\n<H1>Access Denied</H1>\n \n"
    "You don't have permission to access \"http&#58;&#47;&#47;collectionapi&#46;metmuseum&#46;"
    "org&#47;public&#47;collection&#47;v1&#47;objects\" on this server.<P>\n"
    "Reference&#32;&#35;18&#46;replay\n</BODY>\n</HTML>\n"
)


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


def fault_answer(fault: Fault | None) -> _Response | None:
    """The answer a fault gives instead of the route's (403, 429, 500, 503), or None when the
    request goes on to its route (no fault, or one that acts on the route's answer or the
    connection: timeout, truncated, corrupt_image, reset)."""
    kind = fault.kind if fault else None
    if kind in ("403", "firewall", "rate_firewall"):
        resp = _Response(403, FIREWALL_403_HTML.encode(), "text/html")
        if kind == "rate_firewall" and fault.params.get("retry_after"):
            resp.headers["Retry-After"] = str(max(1, round(fault.block_remaining_s + 0.5)))
        return resp
    if kind == "429":
        return _Response(429, _json_bytes({"message": "Too Many Requests"}),
                         headers={"Retry-After": str(fault.params["retry_after"])})
    if kind in ("500", "503"):
        msg = "Internal Server Error" if kind == "500" else "Service Unavailable"
        resp = _Response(int(kind), _json_bytes({"message": msg}))
        if fault.params.get("retry_after") is not None:
            resp.headers["Retry-After"] = str(fault.params["retry_after"])
        return resp
    return None


def corrupt_image_answer(raw: str, resp: _Response) -> _Response:
    """A 200 with the content type of ``resp`` and bytes that are no image."""
    garbage = hashlib.sha256(raw.encode()).digest() * 8
    return _Response(200, b"\x00\x13NOTANIMAGE" + garbage, resp.content_type)
