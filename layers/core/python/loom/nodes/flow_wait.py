"""FLOW.WAIT: a durable timer. The engine runs it (a Wait state on AWS, a wake-up row
locally), so a process that dies while waiting resumes on restart and wakes on time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Self

from pydantic import AwareDatetime, Field, model_validator

from loom.nodes.base import NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.workflows.definition import NodeType

MAX_WAIT = timedelta(days=365)


class WaitParameters(ParametersModel):
    seconds: float | None = Field(default=None, ge=0, le=MAX_WAIT.total_seconds())
    until: AwareDatetime | None = Field(
        default=None, description="An ISO 8601 time with a zone, e.g. 2026-12-01T09:00:00Z."
    )

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("give exactly one of `seconds` and `until`")
        return self

    def wake_at(self, now: datetime) -> datetime:
        if self.until is not None:
            return min(max(self.until, now), now + MAX_WAIT)
        return now + timedelta(seconds=self.seconds or 0)


SPEC = register(
    NodeSpec(
        type=NodeType.FLOW,
        subtype="WAIT",
        description="Waits `seconds` or until `until`, durably; then passes its input on.",
        parameters=WaitParameters,
        kind="wait",
    )
)
