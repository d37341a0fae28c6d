"""The intake parts, configured from settings, for the API, ``loom up`` and the functions
alike: the queue is the Postgres table, or SQS when ``LOOM_INTAKE_QUEUE_URL`` is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loom.config import Settings
from loom.db.database import Database
from loom.engine.dispatch import RunDispatcher
from loom.triggers.intake import Intake
from loom.triggers.queue import EventQueue, PostgresQueue

if TYPE_CHECKING:
    from loom.triggers.receive import Receiver


def queue_for(settings: Settings, db: Database) -> EventQueue:
    if settings.intake_queue_url:
        from loom.runtime.aws.sqs_queue import SqsQueue

        return SqsQueue(
            db,
            settings.intake_queue_url,
            max_attempts=settings.intake_max_attempts,
            retry_seconds=settings.intake_retry_seconds,
        )
    return PostgresQueue(
        db,
        max_attempts=settings.intake_max_attempts,
        retry_seconds=settings.intake_retry_seconds,
        visibility_seconds=settings.intake_visibility_seconds,
    )


def intake_for(settings: Settings, db: Database, dispatcher: RunDispatcher) -> Intake:
    return Intake(db, dispatcher, max_input_bytes=settings.max_input_bytes)


def receiver_for(settings: Settings, db: Database, dispatcher: RunDispatcher) -> Receiver:
    # What receives (the mail function, the API's hooks) imports loom.triggers.receive
    # itself; the schedule and intake functions, which only queue and start, never load it
    # (nor the vault).
    from loom.secrets.vault import vault_for
    from loom.triggers.receive import Receiver

    return Receiver(
        db, vault_for(settings), queue_for(settings, db), intake_for(settings, db, dispatcher)
    )
