"""TRIGGER.CRON: starts a run on a schedule, once deployed (``loom up``'s scheduler locally,
EventBridge Scheduler on AWS). A bad expression or time zone is refused at save."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from loom.nodes.base import NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.triggers.cron import check_cron, check_timezone
from loom.workflows.definition import NodeType


class CronParameters(ParametersModel):
    cron: str = Field(
        max_length=200,
        description="Five fields (minute hour day-of-month month day-of-week), or @hourly, "
        "@daily, @weekly, @monthly, @yearly.",
        examples=["0 9 * * MON-FRI"],
    )
    timezone: str = Field(
        default="UTC", max_length=100, description="IANA time zone the expression is read in."
    )
    missed_fire_policy: Literal["skip", "run_once"] = Field(
        default="skip",
        description="Fires missed while no scheduler ran: skip them, or run once for them all.",
    )
    payload: Any = Field(default=None, description="Handed to every run as `input.payload`.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)


SPEC = register(
    NodeSpec(
        type=NodeType.TRIGGER,
        subtype="CRON",
        description="Starts a run on a cron schedule in a time zone; the input holds "
        "`scheduled_for`, `missed_fires` and `payload`.",
        parameters=CronParameters,
        kind="trigger",
        inputs=(),
    )
)
