import threading

import pytest

from artsim_pipeline.core.ratelimit import AdaptiveLimiter, AdaptiveSettings, CooldownGate, TokenBucket


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


# -- the adaptive limiter ---------------------------------------------------------------------------

class FakeFirewall:
    """A token-bucket firewall on the fake clock: `rate`/s, `burst`, blocks for `block_s`."""

    def __init__(self, clock, rate, burst, block_s):
        self.clock, self.rate, self.burst, self.block_s = clock, rate, burst, block_s
        self.tokens, self.last, self.blocked_until, self.blocks = float(burst), 0.0, -1.0, 0

    def admits(self):
        now = self.clock()
        if now < self.blocked_until:
            return False
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.blocked_until = now + self.block_s
        self.blocks += 1
        return False


def drive(limiter, firewall, answers_wanted, clock):
    """One worker sending requests through `limiter` until `answers_wanted` got through."""
    answered = 0
    while answered < answers_wanted:
        ticket = limiter.acquire()
        if firewall.admits():
            limiter.on_answer(ticket)
            answered += 1
        else:
            limiter.on_block(ticket)
        clock.sleep(0.001)  # the round trip
    return clock.now


def limiter_on(clock, rate, burst=5, **settings):
    return AdaptiveLimiter(rate, burst, AdaptiveSettings(**settings), clock=clock, sleep=clock.sleep)


def test_a_block_closes_the_gate_and_lets_one_probe_through_at_growing_intervals():
    clock = FakeClock()
    limiter = limiter_on(clock, rate=10)
    ticket = limiter.acquire()
    limiter.on_block(ticket)
    assert limiter.blocked and limiter.rate == 5.0  # halved (too few answers to say more)
    probe = limiter.acquire()  # waits until the first probe is due, then lets one request through
    assert probe.probe and clock.now == pytest.approx(1.0, abs=1e-6)
    limiter.on_block(probe)  # still blocked: the next probe waits longer
    probe = limiter.acquire()
    assert probe.probe and clock.now == pytest.approx(2.5, abs=1e-3)
    limiter.on_answer(probe)  # the block is over
    assert not limiter.blocked and limiter.block_s == pytest.approx(2.5, abs=1e-3)
    assert not limiter.acquire().probe
    assert limiter.rate == 5.0 and limiter.blocks == 1 and limiter.probes == 2


def test_answers_of_requests_sent_before_a_block_do_not_end_it():
    clock = FakeClock()
    limiter = limiter_on(clock, rate=10)
    early, late = limiter.acquire(), limiter.acquire()
    limiter.on_block(early)
    limiter.on_answer(late)  # in flight when the block began: not a probe
    assert limiter.blocked
    limiter.on_block(late)  # a second refusal of the same block changes nothing
    assert limiter.rate == 5.0 and limiter.blocks == 1


def test_retry_after_is_honoured_before_any_probe():
    clock = FakeClock()
    limiter = limiter_on(clock, rate=10)
    limiter.on_block(limiter.acquire(), retry_after=7.0)
    probe = limiter.acquire()
    assert probe.probe and clock.now == pytest.approx(7.0, abs=1e-6)


def test_a_throttle_halves_the_rate_whatever_got_through_before():
    clock = FakeClock()
    limiter = limiter_on(clock, rate=40)
    for _ in range(20):
        limiter.on_answer(limiter.acquire())
    limiter.on_block(limiter.acquire(), retry_after=0.5, throttle=True)
    assert limiter.rate == 20.0


@pytest.mark.parametrize("configured", [10.0, 50.0])
def test_under_a_token_bucket_firewall_the_rate_settles_below_what_it_sustains(configured):
    """5/s, burst 10, 20 s block: after at most two blocks the limiter runs below 5/s and is
    not blocked again; the fitted or estimated rate is not far below it either."""
    clock = FakeClock()
    firewall = FakeFirewall(clock, rate=5.0, burst=10, block_s=20.0)
    limiter = limiter_on(clock, rate=configured)
    drive(limiter, firewall, 300, clock)
    assert 1 <= firewall.blocks <= 2
    assert 3.0 <= limiter.rate <= 5.5
    assert 300 / clock.now >= 0.5 * 5.0  # the goal, on the fake clock
    blocks, started = firewall.blocks, clock.now
    drive(limiter, firewall, 600, clock)  # two more minutes: probing up may cost one block at most
    assert firewall.blocks <= blocks + 1 and limiter.rate <= 6.0
    assert 600 / (clock.now - started) >= 0.75 * 5.0  # fake-clock throughput near the sustainable rate
    assert limiter.block_s == pytest.approx(20.0, abs=3.0)  # the block length was learned


def test_two_blocks_give_a_fit_of_the_firewall_rate():
    clock = FakeClock()
    firewall = FakeFirewall(clock, rate=4.0, burst=40, block_s=15.0)
    limiter = limiter_on(clock, rate=6.0, burst=1, probe_after_s=1e9)
    drive(limiter, firewall, 200, clock)  # 6/s: blocked after ~20 s; then 3/s (halved): no block
    assert firewall.blocks == 1 and limiter.rate == 3.0
    limiter = limiter_on(clock, rate=12.0, burst=1, probe_after_s=1e9)
    firewall = FakeFirewall(clock, rate=4.0, burst=40, block_s=15.0)
    drive(limiter, firewall, 400, clock)  # 12/s (blocked after ~5 s), 6/s (blocked after ~20 s), then the fit
    assert firewall.blocks == 2
    assert limiter.rate == pytest.approx(0.9 * 4.0, rel=0.1)


def test_the_rate_probes_back_up_after_calm_but_not_to_a_blocked_rate():
    clock = FakeClock()
    limiter = limiter_on(clock, rate=10, probe_after_s=5.0)
    for _ in range(10):
        limiter.on_answer(limiter.acquire())
    blocked = limiter.acquire()
    limiter.on_block(blocked)  # at 10/s, after 10 answers: the rate drops to 10 per 2.5 s
    assert limiter.rate == pytest.approx(10 / 2.5)
    limiter.on_answer(limiter.acquire())  # the probe ends the block

    def calm(seconds):
        end = clock.now + seconds
        while clock.now < end:
            limiter.on_answer(limiter.acquire())
            clock.sleep(0.5)

    calm(200)
    assert limiter.rate == pytest.approx(10 * (1 - 0.05 / 2))  # crept back up, to just under the rate that was blocked
    calm(400)
    assert limiter.rate == 10.0 and limiter.ceiling > 10.0  # after a long calm the blocked rate is tried again


def test_the_learned_state_carries_to_the_next_run_but_never_above_the_configured_rate():
    clock = FakeClock()
    limiter = limiter_on(clock, rate=50)
    for _ in range(12):
        limiter.on_answer(limiter.acquire())
    limiter.on_block(limiter.acquire())
    clock.sleep(20)
    limiter.on_answer(limiter.acquire())
    state = limiter.state()
    assert state["rate"] == pytest.approx(12 / 2.5) and state["ceiling"] == 50 and state["block_s"] == pytest.approx(20, abs=0.1)
    nxt = limiter_on(FakeClock(), rate=50)
    nxt.restore(state)
    assert nxt.rate == pytest.approx(12 / 2.5) and nxt.block_s == pytest.approx(20, abs=0.1)
    lower = limiter_on(FakeClock(), rate=2)
    lower.restore(state)
    assert lower.rate == 2  # the user's lower rate wins
    lower.restore({"rate": "junk", "block_s": None})  # a damaged state changes nothing
    assert lower.rate == 2
