"""The local scheduler inside ``loom up``: fires due TRIGGER.CRON schedules (EventBridge
Scheduler does this on AWS). Several processes may run it on one database; each due fire
still happens once (``loom.triggers.schedules``).

It sleeps until the next schedule is due, but at most ``poll`` seconds so schedules
deployed meanwhile (by another process) are seen in time. The clock and the wait are
injectable so tests drive it through simulated time. Once an hour of that clock it also
forgets replay keys past their retention.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from loom.db.database import Database
from loom.triggers.intake import Intake
from loom.triggers.queue import EventQueue
from loom.triggers.receive import prune_deliveries
from loom.triggers.schedules import Fired, fire_due, next_due

log = logging.getLogger(__name__)

HOUSEKEEPING = timedelta(hours=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(
        self,
        db: Database,
        queue: EventQueue,
        intake: Intake,
        *,
        poll_seconds: float = 1.0,
        grace_seconds: float = 60.0,
        retention_seconds: float = 7 * 86_400,
        clock: Callable[[], datetime] = utcnow,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.db = db
        self.queue = queue
        self.intake = intake
        self.poll_seconds = poll_seconds
        self.grace = timedelta(seconds=grace_seconds)
        self.retention = timedelta(seconds=retention_seconds)
        self.clock = clock
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread = threading.Thread(target=self._run, name="loom-scheduler", daemon=True)
        self._housekept: datetime | None = None

    def tick(self) -> tuple[list[Fired], float]:
        """Fire what is due now; and how long to sleep before the next tick."""
        now = self.clock()
        fired = fire_due(self.db, self.queue, self.intake, now=now, grace=self.grace)
        if self._housekept is None or now - self._housekept >= HOUSEKEEPING:
            self._housekept = now
            pruned = prune_deliveries(self.db, now - self.retention)
            if pruned:
                log.info("forgot %d delivery key(s) past their retention", pruned)
        upcoming = next_due(self.db)
        delay = self.poll_seconds
        if upcoming is not None:
            delay = min(delay, max((upcoming - self.clock()).total_seconds(), 0.0))
        return fired, delay

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                _, delay = self.tick()
            except Exception:  # a database hiccup must not end the scheduler
                log.exception("firing schedules failed")
                delay = self.poll_seconds
            if self._wait(delay):
                return
