"""Cron expressions and time zones are refused with a reason at save; fire times and the
missed-fire policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loom.triggers.cron import check_cron, check_timezone, next_fire, plan
from loom.workflows.validation import find_problems

GRACE = timedelta(seconds=60)
DUE = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "out of range"),
        ("* * * *", "has 4 field"),
        ("0 * * * * *", "has 6 field"),
        ("every day", "has 2 field"),
        ("a b c d e", "not a valid cron expression"),
        ("0 0 31 2 *", "it never fires"),
        ("@reboot", "not a cron macro"),
        ("", "has 0 field"),
    ],
)
def test_bad_expressions_are_refused_with_a_reason(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_cron(expression)


def test_good_expressions_are_normalised() -> None:
    assert check_cron("  0  9 * *   MON-FRI ") == "0 9 * * MON-FRI"
    assert check_cron("@Daily") == "@daily"


def test_unknown_time_zones_are_refused() -> None:
    assert check_timezone("Europe/Paris") == "Europe/Paris"
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "UTC+2"):
        with pytest.raises(ValueError, match="not a known time zone"):
            check_timezone(bad)


def test_a_bad_cron_node_is_refused_at_save_with_its_path() -> None:
    definition = {
        "name": "cron",
        "nodes": [
            {"id": "t", "type": "TRIGGER", "subtype": "CRON",
             "parameters": {"cron": "99 * * * *", "timezone": "Nowhere/City"}},
        ],
    }  # fmt: skip
    _, problems = find_problems(definition)
    found = {p.path: p.message for p in problems}
    assert "out of range" in found["nodes[0].parameters.cron"]
    assert "not a known time zone" in found["nodes[0].parameters.timezone"]


def test_fire_times_follow_the_zone_and_daylight_saving() -> None:
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_fire("0 9 * * *", "Europe/Paris", DUE) == datetime(2025, 1, 2, 8, tzinfo=UTC)
    summer = datetime(2025, 7, 1, 12, tzinfo=UTC)
    assert next_fire("0 9 * * *", "Europe/Paris", summer) == datetime(2025, 7, 2, 7, tzinfo=UTC)


def test_an_on_time_fire_fires_and_schedules_the_next() -> None:
    fire = plan("*/5 * * * *", "UTC", due=DUE, now=DUE + timedelta(seconds=0.4),
                policy="skip", grace=GRACE)  # fmt: skip
    assert (fire.fire_for, fire.missed) == (DUE, 0)
    assert fire.next_at == DUE + timedelta(minutes=5)


def test_missed_fires_are_skipped_or_run_once() -> None:
    late = DUE + timedelta(hours=1, minutes=2)  # 13 fire times passed, the last 2 min ago
    skipped = plan("*/5 * * * *", "UTC", due=DUE, now=late, policy="skip", grace=GRACE)
    assert (skipped.fire_for, skipped.missed) == (None, 13)
    once = plan("*/5 * * * *", "UTC", due=DUE, now=late, policy="run_once", grace=GRACE)
    assert (once.fire_for, once.missed) == (DUE + timedelta(hours=1), 12)
    assert once.next_at == skipped.next_at == DUE + timedelta(hours=1, minutes=5)


def test_after_an_outage_the_latest_fire_is_on_time_if_within_grace() -> None:
    now = DUE + timedelta(hours=1, seconds=30)
    fire = plan("*/5 * * * *", "UTC", due=DUE, now=now, policy="skip", grace=GRACE)
    assert (fire.fire_for, fire.missed) == (DUE + timedelta(hours=1), 12)
