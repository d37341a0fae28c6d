"""Backoff between attempts: exponential, capped, jittered, never before Retry-After."""

from __future__ import annotations

import pytest

from loom.llm.retry import Backoff

BACKOFF = Backoff(base_seconds=0.5, max_seconds=4.0)


@pytest.mark.parametrize(("attempt", "step"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)])
def test_the_step_doubles_up_to_the_cap_and_jitter_spans_its_upper_half(
    attempt: int, step: float
) -> None:
    assert BACKOFF.delay(attempt, None, lambda: 0.0) == step / 2
    assert BACKOFF.delay(attempt, None, lambda: 1.0) == step


def test_retry_after_is_a_floor_even_above_the_cap() -> None:
    assert BACKOFF.delay(1, 7.0, lambda: 1.0) == 7.0
    assert BACKOFF.delay(4, 1.0, lambda: 1.0) == 4.0
    assert BACKOFF.delay(1, 0.0, lambda: 0.0) == 0.25
