"""Thread-safe rate limiting shared by every worker of one API client.

`TokenBucket` spaces requests to a sustained rate with a small burst; `CooldownGate` pauses
every worker at once; `AdaptiveLimiter` combines both and learns the rate a firewall tolerates
(the Met answers bursts with 403 and blocks the client for a while: hammering it then only
extends the block, and coming back at the same rate only trips it again).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable


class TokenBucket:
    """Classic token bucket: `rate` tokens per second, at most `burst` stored."""

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until one token is available, then take it."""
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0 - 1e-9:  # tolerance: float sums of waits fall a hair short
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return
                wait = (1.0 - self._tokens) / self.rate
            self._sleep(wait)

    def set_rate(self, rate: float, *, tokens: float | None = None) -> None:
        """Change the sustained rate (tokens earned so far are kept); `tokens` resets the store."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self.rate = float(rate)
            if tokens is not None:
                self._tokens = max(0.0, min(self.burst, float(tokens)))


class CooldownGate:
    """A gate every worker passes before a request; `trip(seconds)` closes it for everyone."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._clock = clock
        self._sleep = sleep
        self._open_at = 0.0
        self._lock = threading.Lock()
        self.trips = 0

    def trip(self, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            if until > self._open_at:
                self._open_at = until
            self.trips += 1

    def wait(self) -> float:
        """Sleep while the gate is closed; returns how long this caller waited."""
        waited = 0.0
        while True:
            with self._lock:
                remaining = self._open_at - self._clock()
            if remaining <= 0:
                return waited
            self._sleep(remaining)
            waited += remaining


@dataclass(frozen=True)
class AdaptiveSettings:
    """How `AdaptiveLimiter` reacts to a firewall (403) or a throttle (429)."""

    min_rate: float = 0.2  # requests/s never go below this
    decrease: float = 0.5  # a block after a long calm stretch halves the rate
    burst_seconds: float = 2.5  # a quick block: what got through is taken as ~2.5 s of the firewall's rate
    min_quick_answers: int = 5  # ... when at least this many got through (fewer: a stray 403)
    safety: float = 0.9  # run at this fraction of a fitted sustainable rate
    probe_after_s: float = 30.0  # calm seconds before the rate is raised again
    probe_step: float = 0.05  # ... by this fraction (each probe past the firewall's rate costs a block)
    ceiling_probe_after_s: float = 300.0  # calm seconds at the cap before a once-blocked rate is tried
    first_probe_s: float = 1.0  # first probe of a block of unknown length
    probe_growth: float = 1.5  # each failed probe waits this much longer
    max_probe_interval_s: float = 60.0
    poll_s: float = 0.05  # how often waiting workers look whether the probe got through
    min_fit_span_s: float = 1.0  # two blocks this far apart in duration give a rate fit
    history: int = 50  # rate changes kept for reporting


@dataclass(frozen=True)
class Ticket:
    """Permission for one request: `probe` when it tests whether a block is over."""

    probe: bool
    episode: int


class AdaptiveLimiter:
    """A token bucket whose rate follows what the API tolerates, shared by every worker.

    - *Lower on a block.* The first 403 (or 429) of a block closes the gate for everybody and
      lowers the rate. With two blocks behind it, the limiter fits a token-bucket firewall
      (answers = burst + rate x seconds, from a full bucket at each resume) and runs at
      `safety` x the fitted rate; otherwise it halves the rate, or, when the block came
      quickly, takes what got through as `burst_seconds` of the firewall's rate.
    - *Honour the block.* `Retry-After` is obeyed; without one a single probe request is let
      through after 1 s, 1.5 s, 2.25 s, ... (or just under the block length learned from an
      earlier block), every other worker waits until a probe gets an answer.
    - *Probe back up.* After `probe_after_s` without a block the rate rises by `probe_step`,
      up to the configured rate, but not to a rate that was blocked before.
    - *Remember.* `state()` is what to keep for the next run (`restore()` reads it back).
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        settings: AdaptiveSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or AdaptiveSettings()
        self.max_rate = float(rate)
        self.bucket = TokenBucket(rate, burst, clock=clock, sleep=sleep)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._started = now
        self._episode = 0
        self._blocked = False
        self._block_started = 0.0
        self._block_retry_after = False
        self._next_probe_at = 0.0
        self._probe_interval = self.settings.first_probe_s
        self._probe_in_flight = False
        self._resumed_at = now
        self._answers = 0
        self._last_change = now
        self._episodes: list[tuple[int, float, float]] = []  # (answers, seconds, rate) per block
        self.ceiling: float | None = None  # the lowest rate that was blocked
        self.block_s: float | None = None  # how long the last block without Retry-After lasted
        self.blocks = 0
        self.probes = 0
        self.blocked_s = 0.0
        self.changes: list[tuple[float, str, float]] = []  # (seconds since start, why, new rate)

    @property
    def rate(self) -> float:
        return self.bucket.rate

    @property
    def blocked(self) -> bool:
        with self._lock:
            return self._blocked

    # -- the request path -----------------------------------------------------------------------

    def acquire(self) -> Ticket:
        """Wait for the gate and a token; returns the ticket to report the answer with."""
        while True:
            with self._lock:
                now = self._clock()
                if self._blocked:
                    if now >= self._next_probe_at and not self._probe_in_flight:
                        self._probe_in_flight = True
                        self.probes += 1
                        return Ticket(True, self._episode)
                    wait = self.settings.poll_s if self._probe_in_flight else self._next_probe_at - now
                else:
                    wait = None
            if wait is not None:
                self._sleep(max(wait, 1e-3))
                continue
            self.bucket.acquire()
            with self._lock:
                if not self._blocked:  # the gate may have closed while this worker waited
                    return Ticket(False, self._episode)

    def on_answer(self, ticket: Ticket) -> None:
        """The API answered (anything but a block or a throttle)."""
        with self._lock:
            now = self._clock()
            if ticket.probe and self._blocked and ticket.episode == self._episode:
                self._end_block(now)
                return
            if self._blocked or ticket.episode != self._episode:
                return  # sent before the current block or before the last one ended
            self._answers += 1
            s = self.settings
            calm = now - self._last_change
            if self.ceiling is not None and calm >= s.ceiling_probe_after_s:
                self.ceiling *= 1 + s.probe_step  # long calm below a once-blocked rate: test it again
                self._last_change = now - s.probe_after_s
            cap = self.max_rate if self.ceiling is None else min(self.max_rate, self.ceiling * (1 - s.probe_step / 2))
            if calm >= s.probe_after_s and self.rate < cap:
                self._set_rate(min(cap, self.rate * (1 + s.probe_step)), now, "probe up")

    def on_block(self, ticket: Ticket, retry_after: float | None = None, *, throttle: bool = False) -> None:
        """The API refused the request: a firewall 403, or with `throttle` a 429 (which only
        halves the rate: an API that throttles politely says so early)."""
        with self._lock:
            now = self._clock()
            s = self.settings
            if self._blocked:
                if ticket.probe and ticket.episode == self._episode:  # the block is not over yet
                    self._probe_in_flight = False
                    if retry_after is not None:
                        self._next_probe_at = now + retry_after
                    else:
                        self._next_probe_at = now + self._probe_interval
                        self._probe_interval = min(s.max_probe_interval_s, self._probe_interval * s.probe_growth)
                return
            if ticket.episode != self._episode:
                return  # a straggler sent before the last block ended: that block is over
            self._episode += 1
            self._blocked = True
            self._block_started = now
            self._block_retry_after = retry_after is not None
            self.blocks += 1
            answers, seconds, rate = self._answers, now - self._resumed_at, self.rate
            self._episodes = [*self._episodes[-2:], (answers, seconds, rate)]
            self.ceiling = rate if self.ceiling is None else min(self.ceiling, rate)
            lowered = max(s.min_rate, rate * s.decrease) if throttle else self._lowered(answers, seconds, rate)
            self._set_rate(lowered, now, "throttled" if throttle else "block", tokens=0.0)
            if retry_after is not None:
                first = retry_after
                self._probe_interval = max(s.first_probe_s, retry_after)
            elif self.block_s:
                first = 0.9 * self.block_s
                self._probe_interval = max(s.first_probe_s, 0.1 * self.block_s)
            else:
                first = s.first_probe_s
                self._probe_interval = s.first_probe_s * s.probe_growth
            self._next_probe_at = now + first

    def on_no_answer(self, ticket: Ticket) -> None:
        """The request got no HTTP answer (timeout, reset): a probe is tried again soon."""
        with self._lock:
            if ticket.probe and self._blocked and ticket.episode == self._episode:
                self._probe_in_flight = False
                self._next_probe_at = self._clock() + self.settings.first_probe_s

    # -- rates -----------------------------------------------------------------------------------

    def _lowered(self, answers: int, seconds: float, rate: float) -> float:
        s = self.settings
        new = None
        if len(self._episodes) >= 2:
            (n1, t1, r1), (n2, t2, r2) = self._episodes[-2:]
            if abs(t2 - t1) >= s.min_fit_span_s and n2 != n1:
                fitted = (n2 - n1) / (t2 - t1)  # answers = burst + fitted * seconds
                burst = n2 - fitted * t2
                if 0 < fitted < min(r1, r2) and burst >= -1:
                    new = s.safety * fitted
        if new is None:
            new = rate * s.decrease
            if answers >= s.min_quick_answers:
                new = min(new, answers / s.burst_seconds)
        return max(s.min_rate, min(self.max_rate, new))

    def _set_rate(self, rate: float, now: float, why: str, tokens: float | None = None) -> None:
        self.bucket.set_rate(rate, tokens=tokens)
        self._last_change = now
        self.changes = [*self.changes[-(self.settings.history - 1):], (round(now - self._started, 3), why, round(rate, 3))]

    def _end_block(self, now: float) -> None:
        self._blocked = False
        self._probe_in_flight = False
        lasted = now - self._block_started
        self.blocked_s += lasted
        if not self._block_retry_after:
            self.block_s = lasted
        self._resumed_at = now
        self._answers = 0
        self._last_change = now
        self.bucket.set_rate(self.rate, tokens=1.0)  # no burst straight after a block

    # -- memory between runs ------------------------------------------------------------------

    def state(self) -> dict:
        """What the next run should start from (JSON-ready)."""
        with self._lock:
            return {
                "rate": round(self.rate, 4),
                "max_rate": self.max_rate,
                "block_s": round(self.block_s, 3) if self.block_s else None,
                "ceiling": round(self.ceiling, 4) if self.ceiling else None,
                "blocks": self.blocks,
            }

    def restore(self, state: dict | None) -> None:
        """Start from a learned state: its rate (never above the configured one), the lowest rate
        that was blocked, and the block length."""
        if not isinstance(state, dict):
            return
        rate, block_s, ceiling = state.get("rate"), state.get("block_s"), state.get("ceiling")
        with self._lock:
            if isinstance(ceiling, (int, float)) and ceiling > 0:
                self.ceiling = float(ceiling)
            if isinstance(rate, (int, float)) and rate > 0 and rate < self.max_rate:
                self._set_rate(max(self.settings.min_rate, float(rate)), self._clock(), "learned")
            if isinstance(block_s, (int, float)) and block_s > 0:
                self.block_s = float(block_s)
