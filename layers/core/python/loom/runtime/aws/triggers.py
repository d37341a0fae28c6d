"""Triggers on AWS: EventBridge Scheduler invokes two jobs every minute, the work the
scheduler and the queue consumer of ``loom up`` do in-process.

- ``fire_schedules``: fire every CRON trigger due now (claimed by guarded updates, so a
  repeated or concurrent invocation fires nothing twice), then forget delivery keys past
  their retention.
- ``drain_intake``: handle the intake queue's due events (retries, events a released
  lease lets start, replayed dead letters) until it is empty or the invocation's time
  budget is spent.

Webhooks need neither: the API's ``triggers`` function starts their runs as it answers.
Runs go to Step Functions through the platform's dispatcher.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from loom.runtime.aws.dispatcher import StepFunctionsDispatcher
from loom.runtime.aws.platform import AwsPlatform
from loom.triggers.events import TOPIC
from loom.triggers.queue import deliver
from loom.triggers.receive import prune_deliveries
from loom.triggers.schedules import fire_due
from loom.triggers.wiring import intake_for, queue_for

BATCH = 20
# Leave the rest of the function's minute to the next invocation.
DRAIN_SECONDS = 45.0


def fire_schedules(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
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
