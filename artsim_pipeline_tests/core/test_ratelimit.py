import threading

import pytest

from artsim_pipeline.core.ratelimit import CooldownGate, TokenBucket


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        with self.lock:
            self.now += seconds


def test_token_bucket_spaces_requests_to_the_rate_after_the_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        bucket.acquire()
    assert clock.now == 0.0  # the burst is free
    for _ in range(10):
        bucket.acquire()
    assert clock.now == pytest.approx(1.0, abs=1e-6)  # then exactly `rate` per second


def test_token_bucket_rejects_a_non_positive_rate():
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


def test_cooldown_gate_holds_every_caller_until_it_reopens():
    clock = FakeClock()
    gate = CooldownGate(clock=clock, sleep=clock.sleep)
    assert gate.wait() == 0.0
    gate.trip(30)
    gate.trip(5)  # a shorter trip never shortens the block
    assert gate.wait() == pytest.approx(30)
    assert gate.wait() == 0.0
    assert gate.trips == 2
