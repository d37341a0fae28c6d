"""The local scheduler, driven through simulated time: it fires on time, once however many
schedulers share the database, and applies each trigger's missed-fire policy."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loom.db import Database
from loom.runtime.local.scheduler import Scheduler
from loom.triggers.deploy import deploy, undeploy
from loom.triggers.intake import Intake
from loom.triggers.queue import PostgresQueue
from loom.workflows.service import create_workflow
from tests.utils.pg import PgCluster
from tests.utils.triggers import (
    RecordingDispatcher,
    cron,
    flow,
    isolated_database,
    new_workspace,
    runs_of,
)

T0 = datetime(2031, 3, 3, 8, 59, 58, tzinfo=UTC)


@pytest.fixture
def db(cluster: PgCluster) -> Iterator[Database]:
    with isolated_database(cluster, "sched") as database:
        yield database


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += timedelta(seconds=seconds)


def _scheduler(db: Database, clock: Clock, **options: Any) -> Scheduler:
    intake = Intake(db, RecordingDispatcher())
    return Scheduler(db, PostgresQueue(db), intake, clock=clock, **options)


def _deployed(
    db: Database, workspace: uuid.UUID, trigger: dict[str, Any], now: datetime
) -> uuid.UUID:
    workflow_id = create_workflow(db, workspace, flow(trigger)).workflow_id
    deploy(db, workspace, workflow_id, now=now)
    return workflow_id


def test_a_cron_trigger_fires_within_a_second_of_due_time(db: Database) -> None:
    workspace = new_workspace(db)
    clock = Clock(T0)
    workflow_id = _deployed(db, workspace, cron("0 9 * * *", timezone="UTC"), T0)
    fired_at: list[datetime] = []
    stop = threading.Event()

    def wait(seconds: float) -> bool:
        """Simulated sleep: time passes at once; the loop stops after the fire."""
        assert 0 <= seconds <= 1.0
        clock.advance(max(seconds, 0.001))
        return stop.is_set()

    scheduler = _scheduler(db, clock, poll_seconds=1.0, wait=wait)
    original = scheduler.tick

    def tick() -> Any:
        fired, delay = original()
        if fired:
            fired_at.append(clock())
            stop.set()
        return fired, delay

    scheduler.tick = tick  # type: ignore[method-assign]
    scheduler.start()
    scheduler._thread.join(30)
    assert not scheduler._thread.is_alive()
    due = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)
    [when] = fired_at
    assert timedelta(0) <= when - due < timedelta(seconds=1)
    [run] = runs_of(db, workspace, workflow_id)
    assert run["input"]["scheduled_for"] == due.isoformat()
    assert run["input"]["missed_fires"] == 0
    assert run["trigger"]["type"] == "cron" and run["trigger"]["node_id"] == "t"


def test_two_schedulers_on_one_database_fire_each_time_once(db: Database) -> None:
    workspace = new_workspace(db)
    clock = Clock(T0)
    workflows = [_deployed(db, workspace, cron("* * * * *"), T0) for _ in range(3)]
    # Two processes: two pools, two schedulers, ticking at the same moments.
    with Database(db.urls, max_size=4) as other:
        schedulers = [_scheduler(db, clock), _scheduler(other, clock)]
        for _ in range(5):
            clock.advance(60)
            barrier = threading.Barrier(2)
            fired: list[int] = []

            def tick(
                scheduler: Scheduler,
                barrier: threading.Barrier = barrier,
                fired: list[int] = fired,
            ) -> None:
                barrier.wait()
                fired.append(len(scheduler.tick()[0]))

            threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert sum(fired) == 3
    for workflow_id in workflows:
        runs = runs_of(db, workspace, workflow_id)
        scheduled = [r["input"]["scheduled_for"] for r in runs]
        assert len(scheduled) == 5 and len(set(scheduled)) == 5


def test_missed_fires_are_skipped_or_run_once_by_policy(db: Database) -> None:
    workspace = new_workspace(db)
    clock = Clock(T0)
    skip = _deployed(db, workspace, cron("*/5 * * * *", missed_fire_policy="skip"), T0)
    once = _deployed(db, workspace, cron("*/5 * * * *", missed_fire_policy="run_once"), T0)
    clock.advance(3600 + 150)  # no scheduler ran for an hour; the last fire was 2.5 min ago
    fired, _ = _scheduler(db, clock, grace_seconds=60).tick()
    assert len(fired) == 1
    assert runs_of(db, workspace, skip) == []
    [run] = runs_of(db, workspace, once)
    assert run["input"]["scheduled_for"] == "2031-03-03T10:00:00+00:00"
    assert run["input"]["missed_fires"] == 12  # 09:00 to 09:55 got no run of their own
    # Both schedules now wait for the next fire time, nothing else is due.
    clock.advance(160)
    fired, _ = _scheduler(db, clock).tick()
    assert [f.scheduled_for.isoformat() for f in fired] == ["2031-03-03T10:05:00+00:00"] * 2


def test_undeployed_schedules_do_not_fire(db: Database) -> None:
    workspace = new_workspace(db)
    clock = Clock(T0)
    workflow_id = _deployed(db, workspace, cron("* * * * *"), T0)
    undeploy(db, workspace, workflow_id)
    clock.advance(600)
    fired, delay = _scheduler(db, clock, poll_seconds=0.7).tick()
    assert fired == [] and delay == pytest.approx(0.7)
    assert runs_of(db, workspace, workflow_id) == []
