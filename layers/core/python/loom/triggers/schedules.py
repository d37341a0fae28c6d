"""Firing due schedules, exactly once however many schedulers share the database.

Due schedules are found across workspaces (a locator function), then each is claimed in
its workspace's transaction with ``FOR UPDATE SKIP LOCKED`` and the stored fire time as a
guard: the scheduler that claims it moves ``next_fire_at`` past now and queues the event in
the same transaction; any other finds it locked or no longer due. The event's delivery id
is its fire time, so even a second claim could not start a second run.

Where an outside scheduler fires each schedule at its time (``mirror.MIRROR``,
EventBridge Scheduler on AWS), deploying keeps its schedules in step and it calls
``fire_one``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from loom.db import triggers as repo
from loom.db.database import Database
from loom.triggers.cron import plan
from loom.triggers.events import TOPIC, TriggerEvent
from loom.triggers.intake import Intake
from loom.triggers.queue import EventQueue, Message, Outcome, deliver

log = logging.getLogger(__name__)

BATCH = 100


@dataclass(frozen=True)
class Fired:
    schedule_id: UUID
    scheduled_for: datetime
    missed: int
    outcome: Outcome


def fire_due(
    db: Database, queue: EventQueue, intake: Intake, *, now: datetime, grace: timedelta
) -> list[Fired]:
    """Fire every schedule due at ``now``; what was fired (a missed fire skipped by its
    policy is not)."""
    with db.system() as conn:
        due = repo.locate_due_schedules(conn, now, BATCH)
    fired: list[Fired] = []
    for workspace_id, schedule_id in due:
        found = fire_one(db, queue, intake, workspace_id, schedule_id, now=now, grace=grace)
        if found is not None:
            fired.append(found)
    return fired


def fire_one(
    db: Database,
    queue: EventQueue,
    intake: Intake,
    workspace_id: UUID,
    schedule_id: UUID,
    *,
    now: datetime,
    grace: timedelta,
) -> Fired | None:
    """Fire one schedule if it is due at ``now`` (an outside scheduler's call for it); None
    when it is not due, already fired, inactive, or a missed fire its policy skips."""
    claimed = _claim(db, queue, workspace_id, schedule_id, now, grace)
    if claimed is None:
        return None
    message, scheduled_for, missed = claimed
    return Fired(schedule_id, scheduled_for, missed, deliver(queue, message, intake.handle))


def next_due(db: Database) -> datetime | None:
    with db.system() as conn:
        return repo.next_schedule_due(conn)


def _claim(
    db: Database,
    queue: EventQueue,
    workspace_id: UUID,
    schedule_id: UUID,
    now: datetime,
    grace: timedelta,
) -> tuple[Message, datetime, int] | None:
    with db.tenant(workspace_id) as conn:
        row = repo.claim_due_schedule(conn, schedule_id, now)
        if row is None:
            return None
        fire = plan(
            row["cron"],
            row["timezone"],
            due=row["next_fire_at"],
            now=now,
            policy=row["missed_policy"],
            grace=grace,
        )
        fired_at = now if fire.fire_for is not None else None
        repo.advance_schedule(conn, schedule_id, next_fire_at=fire.next_at, fired_at=fired_at)
        if fire.fire_for is None:
            log.info("schedule %s: %d missed fire(s) skipped by policy", schedule_id, fire.missed)
            return None
        event = TriggerEvent(
            trigger_id=row["trigger_id"],
            workflow_id=row["workflow_id"],
            node_id=row["node_id"],
            subtype="CRON",
            delivery_id=fire.fire_for.isoformat(),
            input={
                "scheduled_for": fire.fire_for.isoformat(),
                "fired_at": now.isoformat(),
                "timezone": row["timezone"],
                "missed_fires": fire.missed,
                "payload": row["config"].get("payload"),
            },
            received_at=now,
        )
        message = queue.send(
            workspace_id,
            TOPIC,
            event.to_payload(),
            dedupe_key=event.run_key,
            hold=True,
            within=conn,
        )
    return (message, fire.fire_for, fire.missed) if message is not None else None
