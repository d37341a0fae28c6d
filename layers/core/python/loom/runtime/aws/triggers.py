"""Triggers on AWS: EventBridge Scheduler invokes two jobs every minute, the work the
scheduler and the queue consumer of ``loom up`` do in-process, and (with
``LOOM_SCHEDULE_GROUP``) one schedule per CRON trigger at its own times.

- ``fire_schedules``: a trigger's own schedule fires that trigger (``fire_schedule``);
  the minute's fires every CRON trigger due now - those without a schedule of their own,
  or whose invocation failed - (claimed by guarded updates, so a repeated or concurrent
  invocation fires nothing twice), then forgets delivery keys past their retention.
- ``drain_intake``: handle the intake queue's due events (retries, events a released
  lease lets start, replayed dead letters) until it is empty or the invocation's time
  budget is spent.

Webhooks need neither: the API's ``triggers`` function starts their runs as it answers.
Runs go to Step Functions through the platform's dispatcher.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from loom.runtime.aws.dispatcher import StepFunctionsDispatcher
from loom.runtime.aws.platform import AwsPlatform
from loom.triggers.deliveries import prune_deliveries
from loom.triggers.events import TOPIC
from loom.triggers.queue import deliver
from loom.triggers.schedules import fire_due, fire_one
from loom.triggers.wiring import intake_for, queue_for

BATCH = 20
# Leave the rest of the function's minute to the next invocation.
DRAIN_SECONDS = 45.0


def fire_schedules(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    if "schedule_id" in event:
        return fire_schedule(platform, event)
    settings, db = platform.settings, platform.db
    dispatcher = StepFunctionsDispatcher(platform.engine, settings)
    now = platform.engine.clock()
    fired = fire_due(
        db,
        queue_for(settings, db),
        intake_for(settings, db, dispatcher),
        now=now,
        grace=timedelta(seconds=settings.scheduler_grace_seconds),
    )
    pruned = prune_deliveries(db, now - timedelta(seconds=settings.delivery_retention_seconds))
    return {"fired": len(fired), "pruned": pruned}


def fire_schedule(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    """One trigger's EventBridge schedule: fire it, at its scheduled time at the earliest
    (a clock a little behind EventBridge's must not find it not yet due)."""
    settings, db = platform.settings, platform.db
    scheduled = datetime.fromisoformat(str(event["scheduled_time"]))
    fired = fire_one(
        db,
        queue_for(settings, db),
        intake_for(settings, db, StepFunctionsDispatcher(platform.engine, settings)),
        UUID(str(event["workspace_id"])),
        UUID(str(event["schedule_id"])),
        now=max(platform.engine.clock(), scheduled),
        grace=timedelta(seconds=settings.scheduler_grace_seconds),
    )
    return {"fired": 0 if fired is None else 1}


def drain_intake(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    settings, db = platform.settings, platform.db
    queue = queue_for(settings, db)
    intake = intake_for(settings, db, StepFunctionsDispatcher(platform.engine, settings))
    handled = 0
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        messages = queue.receive([TOPIC], BATCH)
        if not messages:
            break
        for message in messages:
            deliver(queue, message, intake.handle)
        handled += len(messages)
    return {"handled": handled}
