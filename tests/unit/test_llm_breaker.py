"""The circuit breaker per provider and model: opens after N unhealthy outcomes, refuses
everything while open, then lets exactly one probe decide."""

from __future__ import annotations

from loom.llm.breaker import CircuitBreaker, State

KEY = "openai/gpt-4o-mini"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failures=3, reset_seconds=30, clock=clock)


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        admitted = breaker.admit(KEY)
        assert admitted is not None
        breaker.record(admitted, healthy=False)


def test_it_opens_after_consecutive_failures_and_refuses_while_open() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 2)
    assert breaker.state(KEY) is State.CLOSED
    _fail(breaker, 1)
    assert breaker.state(KEY) is State.OPEN
    clock.now = 29.9
    assert breaker.admit(KEY) is None
    assert breaker.retry_in(KEY) == 30 - 29.9
    assert breaker.admit("openai/gpt-4o") is not None  # other models are not affected


def test_a_success_resets_the_count() -> None:
    breaker = _breaker(Clock())
    _fail(breaker, 2)
    ok = breaker.admit(KEY)
    assert ok is not None
    breaker.record(ok, healthy=True)
    _fail(breaker, 2)
    assert breaker.state(KEY) is State.CLOSED


def test_half_open_lets_one_probe_and_its_outcome_decides() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.now = 30
    assert breaker.state(KEY) is State.HALF_OPEN
    probe = breaker.admit(KEY)
    assert probe is not None and probe.probe
    assert breaker.admit(KEY) is None  # only one probe at a time
    breaker.record(probe, healthy=False)
    assert breaker.state(KEY) is State.OPEN and breaker.retry_in(KEY) == 30

    clock.now = 60
    probe = breaker.admit(KEY)
    assert probe is not None
    breaker.record(probe, healthy=True)
    assert breaker.state(KEY) is State.CLOSED
    assert breaker.admit(KEY) is not None and breaker.admit(KEY) is not None


def test_outcomes_that_say_nothing_about_health_free_the_probe() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    _fail(breaker, 3)
    clock.now = 30
    probe = breaker.admit(KEY)
    assert probe is not None
    breaker.record(probe, healthy=None)  # e.g. the budget refused, or a bad key
    assert breaker.state(KEY) is State.HALF_OPEN
    assert breaker.admit(KEY) is not None


def test_a_late_failure_of_a_call_admitted_while_closed_is_not_a_probe() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    early = breaker.admit(KEY)
    assert early is not None and not early.probe
    _fail(breaker, 3)
    clock.now = 30
    probe = breaker.admit(KEY)
    assert probe is not None
    breaker.record(early, healthy=None)
    assert breaker.admit(KEY) is None  # the probe is still the only one out
