"""Loom's five-field cron as EventBridge Scheduler's six-field ``cron(...)``, and the
expressions it cannot express, refused with the reason."""

from __future__ import annotations

import pytest

from loom.runtime.aws.schedules import Inexpressible, eventbridge_cron

CONVERTED = [
    ("* * * * *", "cron(* * * * ? *)"),
    ("*/15 * * * *", "cron(0,15,30,45 * * * ? *)"),
    ("0 9 * * MON-FRI", "cron(0 9 ? * MON-FRI *)"),
    ("0 9 * * 1-5", "cron(0 9 ? * MON-FRI *)"),
    ("30 2 * * 0", "cron(30 2 ? * SUN *)"),
    ("30 2 * * 7", "cron(30 2 ? * SUN *)"),  # 7 is Sunday too
    ("0 0 * * 5-7", "cron(0 0 ? * SUN,FRI-SAT *)"),
    ("0 0 * * sat,sun", "cron(0 0 ? * SUN,SAT *)"),
    ("0 0 * * */2", "cron(0 0 ? * SUN,TUE,THU,SAT *)"),  # EventBridge has no day-of-week step
    ("0 0 * * 0-6", "cron(0 0 * * ? *)"),
    ("0 12 1 * *", "cron(0 12 1 * ? *)"),
    ("0 12 1,15 * *", "cron(0 12 1,15 * ? *)"),
    ("0 12 L * *", "cron(0 12 L * ? *)"),
    ("5 4 1-7 jan,jul *", "cron(5 4 1-7 JAN,JUL ? *)"),
    ("0 8-18/2 * * *", "cron(0 8,10,12,14,16,18 * * ? *)"),
    ("0 0 1 */3 *", "cron(0 0 1 JAN,APR,JUL,OCT ? *)"),
    ("@hourly", "cron(0 * * * ? *)"),
    ("@daily", "cron(0 0 * * ? *)"),
    ("@weekly", "cron(0 0 ? * SUN *)"),
    ("@monthly", "cron(0 0 1 * ? *)"),
    ("@yearly", "cron(0 0 1 JAN ? *)"),
]


@pytest.mark.parametrize(("cron", "expected"), CONVERTED)
def test_a_cron_becomes_its_eventbridge_expression(cron: str, expected: str) -> None:
    assert eventbridge_cron(cron) == expected


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 9 1 * MON", "both day-of-month and day-of-week"),
        ("0 9 13 * 5", "both day-of-month and day-of-week"),
        ("0 9 * * 5#3", "has no EventBridge equivalent"),
        ("0 9 15W * *", "has no EventBridge equivalent"),
    ],
)
def test_what_eventbridge_cannot_express_is_refused_with_the_reason(cron: str, reason: str) -> None:
    with pytest.raises(Inexpressible, match=reason):
        eventbridge_cron(cron)


def test_an_invalid_cron_is_refused_as_at_save() -> None:
    with pytest.raises(ValueError, match="five"):
        eventbridge_cron("0 9 * *")
