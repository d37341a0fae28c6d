"""A circuit breaker per provider and model, in process.

Closed, it counts consecutive unhealthy outcomes (server errors, timeouts); at the limit it
opens and refuses every call, so a failing model costs nothing while it rests. After the
reset time one call may probe (half-open): success closes the circuit, failure opens it
again for another rest. Outcomes that say nothing about the model's health (a bad key, a
refused request) neither count nor close, and free the probe slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Pass:
    key: str
    probe: bool


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = failures
        self._reset = reset_seconds
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def state(self, key: str) -> State:
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return State.CLOSED
        if self._clock() - circuit.opened_at < self._reset:
            return State.OPEN
        return State.HALF_OPEN

    def admit(self, key: str) -> Pass | None:
        """A pass for a call to go out now, or None; in half-open only the one probe goes."""
        state = self.state(key)
        if state is State.CLOSED:
            return Pass(key, probe=False)
        circuit = self._circuits[key]
        if state is State.OPEN or circuit.probing:
            return None
        circuit.probing = True
        return Pass(key, probe=True)

    def retry_in(self, key: str) -> float:
        """Seconds until a probe may go out (0 when it may now)."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return 0.0
        return max(0.0, circuit.opened_at + self._reset - self._clock())

    def record(self, admitted: Pass, healthy: bool | None) -> None:
        """The outcome of an admitted call: True healthy, False unhealthy, None neither."""
        circuit = self._circuits.setdefault(admitted.key, _Circuit())
        if admitted.probe:
            circuit.probing = False
        if healthy is None:
            return
        if healthy:
            circuit.failures, circuit.opened_at = 0, None
            return
        circuit.failures += 1
        if admitted.probe or circuit.failures >= self._limit:
            circuit.opened_at = self._clock()
