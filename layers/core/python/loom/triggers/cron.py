"""Cron expressions in a time zone: checking them at save, their fire times, and what to do
about fires that were missed while no scheduler ran.

Expressions have the five standard fields (minute hour day-of-month month day-of-week) or
are one of the ``@hourly``-style macros; seconds are not supported, so fires are at least a
minute apart. Times are computed in the trigger's zone (daylight saving included) and
stored in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

MissedPolicy = Literal["skip", "run_once"]

MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_FIELDS = "minute hour day-of-month month day-of-week"
_COUNT_LIMIT = 10_000  # missed fires counted at most (a long outage of a busy schedule)
_TINY = timedelta(microseconds=1)


def check_cron(expression: str) -> str:
    """The expression, trimmed; ``ValueError`` with a reason a person can act on."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ValueError(
                f"'{text}' is not a cron macro; use one of {', '.join(sorted(MACROS))}"
            )
        return text.lower()
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise ValueError(
            f"'{text}' has {len(fields)} field(s); a cron expression has five: {_FIELDS}"
        )
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterError as exc:
        reason = str(exc).replace(f"[{text}] ", "").removeprefix("is not acceptable")
        reason = reason.strip(", ") or "a field has a value cron does not know"
        if "failed to find" in reason:
            reason = "it never fires"
        raise ValueError(f"'{text}' is not a valid cron expression: {reason} ({_FIELDS})") from None
    return text


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"'{name}' is not a known time zone; use an IANA name such as UTC, "
            "Europe/Paris or America/New_York"
        ) from None
    return name


def next_fire(expression: str, timezone: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, in UTC."""
    local = after.astimezone(ZoneInfo(timezone))
    found: datetime = croniter(expression, local).get_next(datetime)
    return found.astimezone(UTC)


def last_fire(expression: str, timezone: str, at_or_before: datetime) -> datetime:
    """The last fire time at or before ``at_or_before``, in UTC."""
    local = (at_or_before + _TINY).astimezone(ZoneInfo(timezone))
    found: datetime = croniter(expression, local).get_prev(datetime)
    return found.astimezone(UTC)


@dataclass(frozen=True)
class FirePlan:
    """What a scheduler does with a due schedule: fire once for ``fire_for`` (or not at
    all), report ``missed`` fires that got no run of their own, and sleep until ``next_at``."""

    fire_for: datetime | None
    missed: int
    next_at: datetime


def plan(
    expression: str,
    timezone: str,
    *,
    due: datetime,
    now: datetime,
    policy: MissedPolicy,
    grace: timedelta,
) -> FirePlan:
    """``due`` is the stored next fire time (<= ``now``). The latest fire time at or before
    ``now`` is on time within ``grace``; earlier ones were missed. ``skip`` fires only an
    on-time one; ``run_once`` fires once for the latest, however late."""
    latest = max(last_fire(expression, timezone, now), due)
    count = _count(expression, timezone, due, latest)
    on_time = now - latest <= grace
    fire = on_time or policy == "run_once"
    return FirePlan(
        fire_for=latest if fire else None,
        missed=count - 1 if fire else count,
        next_at=next_fire(expression, timezone, now),
    )


def _count(expression: str, timezone: str, first: datetime, last: datetime) -> int:
    """Fire times from ``first`` to ``last``, both included (``first`` is one)."""
    times = croniter(expression, first.astimezone(ZoneInfo(timezone)))
    count = 1
    while count < _COUNT_LIMIT and times.get_next(datetime) <= last:
        count += 1
    return count
