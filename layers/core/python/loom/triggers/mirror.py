"""Schedules kept by an outside scheduler (EventBridge Scheduler on AWS) as well as in the
``schedules`` rows: deploying, publishing, undeploying and deleting call ``sync`` in the
transaction that changed the rows, and the scheduler fires each one through
``schedules.fire_one``. Without one (``loom up``) the rows are the schedule."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from loom.db.database import Conn


class ScheduleMirror(Protocol):
    def sync(self, conn: Conn, workflow_id: UUID) -> None:
        """Make the outside schedules of the workflow match its rows; an error rolls the
        caller's change back."""
        ...


# Set by the platform whose schedules live outside Postgres (``runtime.aws``).
MIRROR: ScheduleMirror | None = None
