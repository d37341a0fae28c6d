"""Waits between attempts: capped exponential backoff with jitter, never shorter than the
provider's Retry-After."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_seconds: float
    max_seconds: float

    def delay(self, attempt: int, retry_after: float | None, jitter: Callable[[], float]) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): half the
        capped exponential step plus a random share of the other half, so callers that
        failed together do not come back together."""
        step = min(self.max_seconds, self.base_seconds * 2.0 ** (attempt - 1))
        return max(step / 2 + jitter() * step / 2, retry_after or 0.0)
