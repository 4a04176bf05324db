"""A polite HTTP GET shared by all workers of one museum client.

One `requests.Session` (connection pooling sized to the worker count), a shared token bucket,
retries with exponential backoff and jitter on 429 / 5xx / timeouts / connection errors /
truncated bodies, `Retry-After` honoured, and a cooldown that pauses *every* worker when a
firewall answers 403. Terminal answers (404, 410, other 4xx) are returned at once, never retried.
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

from artsim_pipeline.core.ratelimit import CooldownGate, TokenBucket

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
    firewall_cooldown_s: float = 60.0
    max_firewall_hits: int = 6
    max_retry_after_s: float = 300.0


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


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    firewall_hits: int = 0
    throttled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries, "firewall_hits": self.firewall_hits, "throttled": self.throttled}


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


class PoliteSession:
    """Rate-limited, retrying GETs; safe to share between threads."""

    def __init__(
        self,
        policy: HttpPolicy | None = None,
        *,
        user_agent: str = USER_AGENT,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or HttpPolicy()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        pool = max(4, self.policy.max_workers * 2)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.bucket = TokenBucket(self.policy.requests_per_second, self.policy.burst, sleep=sleep)
        self.gate = CooldownGate(sleep=sleep)
        self.stats = HttpStats()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

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
        firewall_hits = 0
        last_error = "not attempted"
        last_status: int | None = None
        while True:
            self.gate.wait()
            self.bucket.acquire()
            self.stats.bump("requests")
            retry_wait: float | None = None
            try:
                response = self.session.get(url, params=params, timeout=policy.timeout_s)
                content = response.content  # raises on a body shorter than its Content-Length
            except requests.RequestException as exc:
                last_status, last_error = None, f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                last_status = status
                if status == 200:
                    outcome = HttpOutcome(url, status, True, False, content, headers=dict(response.headers), attempts=attempt + 1)
                    if not expect_json:
                        return outcome
                    try:
                        outcome.text = content.decode(response.encoding or "utf-8")
                        outcome.json = json.loads(outcome.text)
                        return outcome
                    except (UnicodeDecodeError, ValueError) as exc:
                        last_error = f"invalid or truncated JSON body ({len(content)} bytes): {exc}"
                elif status == 403:
                    # The Met firewall: everybody stops, for a while, then we try again.
                    firewall_hits += 1
                    self.stats.bump("firewall_hits")
                    last_error = "HTTP 403 (firewall)"
                    if firewall_hits > policy.max_firewall_hits:
                        return HttpOutcome(url, status, False, False, content, headers=dict(response.headers), error=last_error, attempts=attempt + 1)
                    self.gate.trip(policy.firewall_cooldown_s)
                    continue  # a firewall block is not the request's fault: not counted as a retry
                elif status == 429:
                    self.stats.bump("throttled")
                    retry_wait = parse_retry_after(response.headers.get("Retry-After"))
                    if retry_wait is not None:
                        retry_wait = min(retry_wait, policy.max_retry_after_s)
                        self.gate.trip(retry_wait)
                    last_error = f"HTTP 429 (Retry-After: {response.headers.get('Retry-After')})"
                elif status >= 500:
                    last_error = f"HTTP {status}"
                else:
                    text = content.decode("utf-8", errors="replace")
                    body_json = None
                    try:
                        body_json = json.loads(text)
                    except ValueError:
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
