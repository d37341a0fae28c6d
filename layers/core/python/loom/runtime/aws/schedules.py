"""CRON triggers on EventBridge Scheduler: one schedule per deployed CRON trigger, named
``loom-<trigger id>`` in ``LOOM_SCHEDULE_GROUP``, in the trigger's time zone, invoking the
``schedule_fired`` function with the schedule's ids and EventBridge's scheduled time. That
function fires the schedule through ``schedules.fire_one``, claimed by its stored next
fire time as everywhere else, so a retried or late invocation starts no second run.

``EventBridgeSchedules.sync`` runs in the transaction that deploys, publishes, undeploys
or deletes: a cron EventBridge cannot express refuses the deploy with the reason; an
EventBridge error rolls the deploy back.

Cron: Loom's five fields (or a macro) become EventBridge's six (a year ``*`` added), with
day-of-week numbered 1-7 from Sunday and exactly one day field ``?``. Both day fields set
is cron's "either" rule, which EventBridge cannot express: refused.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from loom.config import Settings
from loom.db import triggers as repo
from loom.db.database import Conn
from loom.errors import ConfigError, InvalidInput
from loom.runtime.aws.clients import client, error_code
from loom.triggers import mirror
from loom.triggers.cron import check_cron

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# field: (lowest, highest, names from ``lowest``)
_FIELDS: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "minute": (0, 59, ()),
    "hour": (0, 23, ()),
    "day-of-month": (1, 31, ()),
    "month": (1, 12, MONTHS),
    "day-of-week": (0, 7, DAYS),
}
RETRIES = 5
MAX_EVENT_AGE_SECONDS = 3600


class Inexpressible(ValueError):
    """A cron expression EventBridge Scheduler cannot express."""


def eventbridge_cron(expression: str) -> str:
    """``cron(...)`` for EventBridge Scheduler; ``Inexpressible`` with the reason."""
    text = check_cron(expression)
    minute, hour, dom, month, dow = MACROS.get(text, text).upper().split(" ")
    days_of_month = "L" if dom == "L" else _field("day-of-month", dom)
    days_of_week = _days_of_week(dow)
    if days_of_month != "*" and days_of_week != "*":
        raise Inexpressible(
            "it sets both day-of-month and day-of-week, which cron reads as either one; "
            "EventBridge Scheduler needs one of them unrestricted"
        )
    if days_of_week == "*":
        days_of_week = "?"
    else:
        days_of_month = "?"
    fields = [_field("minute", minute), _field("hour", hour), days_of_month]
    return f"cron({' '.join(fields)} {_field('month', month)} {days_of_week} *)"


def _days_of_week(text: str) -> str:
    """Loom's 0-7 (0 and 7: Sunday) as EventBridge's names."""
    values = {v % 7 for v in _values("day-of-week", text)}
    if len(values) == 7:
        return "*"
    return ",".join(_runs(sorted(values), DAYS, 0))


def _field(name: str, text: str) -> str:
    low, high, names = _FIELDS[name]
    values = _values(name, text)
    if values == set(range(low, high + 1)):
        return "*"
    return ",".join(_runs(sorted(values), names, low))


def _values(name: str, text: str) -> set[int]:
    low, high, _ = _FIELDS[name]
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step = part.partition("/")
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(name, first), _number(name, last)
        else:
            start = _number(name, base)
            end = high if slash else start
        if start > end:
            raise Inexpressible(f"the {name} range '{base}' wraps around")
        values.update(range(start, end + 1, int(step) if slash else 1))
    return values


def _number(name: str, text: str) -> int:
    low, _, names = _FIELDS[name]
    if text.isdigit():
        return int(text)
    if text in names:
        return names.index(text) + low
    raise Inexpressible(f"'{text}' in {name} has no EventBridge equivalent")


def _runs(values: list[int], names: tuple[str, ...], low: int) -> list[str]:
    """Consecutive values as ranges: 1,2,3,5 -> 1-3,5 (names where the field has them)."""

    def show(value: int) -> str:
        return names[value - low] if names else str(value)

    runs: list[str] = []
    start = previous = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        runs.append(show(start) if start == previous else f"{show(start)}-{show(previous)}")
        if value is not None:
            start = previous = value
    return runs


def schedule_name(trigger_id: UUID) -> str:
    return f"loom-{trigger_id}"


class EventBridgeSchedules:
    """``mirror.ScheduleMirror`` on EventBridge Scheduler."""

    def __init__(self, settings: Settings) -> None:
        if not (settings.schedule_group and settings.schedule_target_arn):
            raise ConfigError(
                "LOOM_SCHEDULE_GROUP is set without LOOM_SCHEDULE_TARGET_ARN: schedules "
                "would have nothing to invoke.",
                solution="Deploy the triggers stack, which sets both with "
                "LOOM_SCHEDULE_ROLE_ARN and LOOM_SCHEDULE_DLQ_ARN.",
            )
        if not settings.schedule_role_arn:
            raise ConfigError(
                "LOOM_SCHEDULE_ROLE_ARN is not set: EventBridge Scheduler needs a role to "
                "invoke the schedule function.",
                solution="Deploy the triggers stack, which sets it.",
            )
        self.group = settings.schedule_group
        self.target = settings.schedule_target_arn
        self.role = settings.schedule_role_arn
        self.dead_letters = settings.schedule_dlq_arn

    def sync(self, conn: Conn, workflow_id: UUID) -> None:
        for row in repo.schedules_of(conn, workflow_id):
            if row["active"]:
                self.put(row)
            else:
                self.remove(row["trigger_id"])

    def put(self, row: dict[str, Any]) -> None:
        try:
            expression = eventbridge_cron(row["cron"])
        except Inexpressible as exc:
            raise InvalidInput(
                f"Trigger '{row['node_id']}': cron '{row['cron']}' cannot be scheduled on "
                f"AWS: {exc}.",
                solution="Split it into triggers that EventBridge Scheduler can express (one "
                "per day field), save, and deploy again.",
            ) from None
        request = {
            "Name": schedule_name(row["trigger_id"]),
            "GroupName": self.group,
            "ScheduleExpression": expression,
            "ScheduleExpressionTimezone": row["timezone"],
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Target": self._target(row),
        }
        scheduler = client("scheduler")
        try:
            scheduler.create_schedule(**request)
        except Exception as exc:
            if error_code(exc) != "ConflictException":
                raise
            scheduler.update_schedule(**request)

    def remove(self, trigger_id: UUID) -> None:
        try:
            client("scheduler").delete_schedule(
                Name=schedule_name(trigger_id), GroupName=self.group
            )
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise

    def _target(self, row: dict[str, Any]) -> dict[str, Any]:
        event = {
            "workspace_id": str(row["workspace_id"]),
            "schedule_id": str(row["id"]),
            "trigger_id": str(row["trigger_id"]),
            "scheduled_time": "<aws.scheduler.scheduled-time>",
        }
        target: dict[str, Any] = {
            "Arn": self.target,
            "RoleArn": self.role,
            "Input": json.dumps(event),
            "RetryPolicy": {
                "MaximumRetryAttempts": RETRIES,
                "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
            },
        }
        if self.dead_letters:
            target["DeadLetterConfig"] = {"Arn": self.dead_letters}
        return target


def install(settings: Settings) -> None:
    """With ``LOOM_SCHEDULE_GROUP`` set, deploying keeps EventBridge schedules in step."""
    if settings.schedule_group:
        mirror.MIRROR = EventBridgeSchedules(settings)
