"""Thread-safe rate limiting shared by every worker of one API client.

`TokenBucket` spaces requests to a sustained rate with a small burst; `CooldownGate` pauses
every worker at once when a firewall starts refusing us (the Met answers bursts with 403 and
blocks the client for a while: hammering it then only extends the block).
"""

from __future__ import annotations

import threading
import time
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
