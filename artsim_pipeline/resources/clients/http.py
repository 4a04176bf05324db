"""A polite HTTP GET shared by all workers of one museum client.

One `requests.Session` (connection pooling sized to the worker count), one adaptive limiter
(`core.ratelimit.AdaptiveLimiter`: a token bucket whose rate drops when a firewall answers 403
or the API 429, a gate that holds *every* worker through the block while single probes test
whether it is over, and a rate that creeps back up), retries with exponential backoff and
jitter on 429 / 5xx / timeouts / connection errors / truncated bodies, `Retry-After` honoured.

Terminal answers are returned at once, never retried: 404, 410 and other 4xx, and a complete
200 body that cannot be parsed (JSON nested too deeply for the parser, or not JSON at all).
Bodies are decoded totally: invalid bytes become U+FFFD and are counted (`text_repairs`).
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import requests
from requests.adapters import HTTPAdapter

from artsim_pipeline.core.ratelimit import AdaptiveLimiter, AdaptiveSettings
from artsim_pipeline.core.text import decode_bytes

USER_AGENT = "artsim/0.1 (+https://github.com/artsim/artsim; museum open-data research)"


@dataclass(frozen=True)
class HttpPolicy:
    """How hard we may press an API. Defaults stay well under the Met firewall's ~30-request burst."""

    requests_per_second: float = 10.0
    burst: int = 5
    max_workers: int = 8
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    firewall_cooldown_s: float = 60.0  # the longest wait between two probes of a block
    max_blocked_s: float = 900.0  # a request waits at most this long for blocks to end
    max_refusals: int = 3  # 403s for one request while others got through: that URL is refused
    max_retry_after_s: float = 300.0
    min_rate: float = 0.2  # the adaptive limiter never goes below this


@dataclass
class HttpOutcome:
    """The end of one logical request after all retries."""

    url: str
    status_code: int | None  # None: no HTTP answer at all (timeout / connection error)
    ok: bool
    terminal: bool  # True when retrying cannot help (404 and friends)
    content: bytes = b""
    text: str = ""
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    text_repairs: int = 0  # invalid byte sequences replaced with U+FFFD while decoding the body


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    firewall_hits: int = 0
    throttled: int = 0
    unparseable: int = 0
    text_repairs: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str, by: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + by)

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries, "firewall_hits": self.firewall_hits,
                "throttled": self.throttled, "unparseable": self.unparseable, "text_repairs": self.text_repairs}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class _Unparseable(Exception):
    """A complete body the JSON parser cannot handle: retrying cannot help."""


def parse_json_body(text: str) -> Any:
    """`json.loads`, with a body nested too deeply for the parser reported as `_Unparseable`."""
    try:
        return json.loads(text)
    except RecursionError:
        raise _Unparseable(f"JSON nested too deeply to parse ({len(text)} characters)") from None


def _body_complete(response: requests.Response, content: bytes) -> bool:
    """Whether the whole body arrived: its Content-Length matched (requests raises otherwise) or
    it was chunked. A body read until the connection closed may have been cut short."""
    headers = response.headers
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return True
    length = headers.get("Content-Length")
    return length is not None and length.strip().isdigit() and int(length) == len(content) and not headers.get("Content-Encoding")


class PoliteSession:
    """Rate-limited, retrying GETs; safe to share between threads."""

    def __init__(
        self,
        policy: HttpPolicy | None = None,
        *,
        user_agent: str = USER_AGENT,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        adaptive: AdaptiveSettings | None = None,
    ) -> None:
        self.policy = policy or HttpPolicy()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        pool = max(4, self.policy.max_workers * 2)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        settings = adaptive or AdaptiveSettings(min_rate=min(self.policy.min_rate, self.policy.requests_per_second),
                                                max_probe_interval_s=self.policy.firewall_cooldown_s,
                                                first_probe_s=min(1.0, self.policy.firewall_cooldown_s))
        self.limiter = AdaptiveLimiter(self.policy.requests_per_second, self.policy.burst, settings, sleep=sleep)
        self.stats = HttpStats()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    @property
    def bucket(self):
        return self.limiter.bucket

    def close(self) -> None:
        self.session.close()

    def _backoff(self, attempt: int) -> float:
        cap = min(self.policy.backoff_max_s, self.policy.backoff_base_s * (2**attempt))
        with self._rng_lock:
            return cap / 2 + self._rng.uniform(0, cap / 2)  # "equal jitter": never zero, never in lockstep

    def get(self, url: str, params: Mapping[str, Any] | None = None, *, expect_json: bool = False) -> HttpOutcome:
        """GET with retries; returns the final outcome instead of raising."""
        policy = self.policy
        attempt = 0
        refusals = 0  # 403s for this request after a block had ended in between
        blocked_since: float | None = None
        last_block_episode = -1
        last_error = "not attempted"
        last_status: int | None = None
        while True:
            ticket = self.limiter.acquire()
            if blocked_since is not None and time.monotonic() - blocked_since > policy.max_blocked_s:
                self.limiter.on_no_answer(ticket)
                return HttpOutcome(url, 403, False, False, error=f"HTTP 403 (firewall): still blocked after {policy.max_blocked_s:.0f} s",
                                   attempts=attempt + 1)
            self.stats.bump("requests")
            retry_wait: float | None = None
            try:
                response = self.session.get(url, params=params, timeout=policy.timeout_s)
                content = response.content  # raises on a body shorter than its Content-Length
            except (ValueError, UnicodeError) as exc:  # InvalidURL & co: a URL no retry can send
                self.limiter.on_no_answer(ticket)
                return HttpOutcome(url, None, False, True, error=f"cannot request this URL: {type(exc).__name__}: {exc}"[:500],
                                   attempts=attempt + 1)
            except requests.RequestException as exc:
                self.limiter.on_no_answer(ticket)
                last_status, last_error = None, f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                last_status = status
                if status == 403:
                    # The Met firewall: everybody stops until a probe gets through, at a lower rate.
                    self.stats.bump("firewall_hits")
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    self.limiter.on_block(ticket, None if retry_after is None else min(retry_after, policy.max_retry_after_s))
                    blocked_since = blocked_since if blocked_since is not None else time.monotonic()
                    if ticket.episode != last_block_episode and last_block_episode >= 0:
                        refusals += 1
                    last_block_episode = ticket.episode
                    if refusals >= policy.max_refusals:
                        return HttpOutcome(url, status, False, True, content, headers=dict(response.headers), attempts=attempt + 1,
                                           error=f"HTTP 403: refused {refusals + 1} times while other requests got through")
                    continue  # a firewall block is not the request's fault: not counted as a retry
                if status == 429:
                    self.stats.bump("throttled")
                    retry_wait = parse_retry_after(response.headers.get("Retry-After"))
                    if retry_wait is not None:
                        retry_wait = min(retry_wait, policy.max_retry_after_s)
                    self.limiter.on_block(ticket, retry_wait if retry_wait is not None else self._backoff(attempt), throttle=True)
                    retry_wait = 0.0  # the limiter's gate does the waiting
                    last_error = f"HTTP 429 (Retry-After: {response.headers.get('Retry-After')})"
                else:
                    self.limiter.on_answer(ticket)
                    blocked_since = None
                if status == 200:
                    outcome = HttpOutcome(url, status, True, False, content, headers=dict(response.headers), attempts=attempt + 1)
                    if not expect_json:
                        return outcome
                    outcome.text, outcome.text_repairs = decode_bytes(content, response.encoding or "utf-8")
                    if outcome.text_repairs:
                        self.stats.bump("text_repairs", outcome.text_repairs)
                    try:
                        outcome.json = parse_json_body(outcome.text)
                        return outcome
                    except _Unparseable as exc:
                        return self._unparseable(outcome, str(exc))
                    except ValueError as exc:
                        last_error = f"invalid JSON body ({len(content)} bytes): {exc}"
                        if _body_complete(response, content):
                            # the whole body arrived and is not JSON: that is the answer, not a glitch
                            return self._unparseable(outcome, last_error)
                elif status >= 500:
                    last_error = f"HTTP {status}"
                elif status != 429:
                    text, _ = decode_bytes(content, response.encoding or "utf-8")
                    body_json = None
                    try:
                        body_json = parse_json_body(text)
                    except (ValueError, _Unparseable):
                        pass
                    message = body_json.get("message") if isinstance(body_json, dict) else None
                    return HttpOutcome(
                        url, status, False, True, content, text=text, json=body_json, headers=dict(response.headers),
                        error=f"HTTP {status}" + (f": {message}" if message else ""), attempts=attempt + 1,
                    )
            if attempt >= policy.max_retries:
                return HttpOutcome(url, last_status, False, False, error=f"{last_error} (gave up after {attempt + 1} attempts)", attempts=attempt + 1)
            self.stats.bump("retries")
            if retry_wait is None:
                self._sleep(self._backoff(attempt))
            attempt += 1

    def _unparseable(self, outcome: HttpOutcome, reason: str) -> HttpOutcome:
        self.stats.bump("unparseable")
        outcome.ok, outcome.terminal, outcome.json = False, True, None
        outcome.error = f"unparseable body: {reason}"
        return outcome
