"""Everything that starts workflows by itself in ``loom up``: the scheduler, the intake
queue consumer, and (when configured) the SMTP listener; started after the engine and
stopped before it."""

from __future__ import annotations

from loom.config import Settings
from loom.db.database import Database
from loom.engine.dispatch import RunDispatcher
from loom.runtime.local.intake import QueueConsumer
from loom.runtime.local.mail_listener import MailListener
from loom.runtime.local.scheduler import Scheduler
from loom.triggers.events import TOPIC
from loom.triggers.wiring import intake_for, queue_for, receiver_for


class LocalTriggers:
    def __init__(self, settings: Settings, db: Database, dispatcher: RunDispatcher) -> None:
        queue = queue_for(settings, db)
        intake = intake_for(settings, db, dispatcher)
        self.scheduler = Scheduler(
            db,
            queue,
            intake,
            poll_seconds=settings.scheduler_poll_seconds,
            grace_seconds=settings.scheduler_grace_seconds,
            retention_seconds=settings.delivery_retention_seconds,
        )
        self.consumer = QueueConsumer(
            queue, {TOPIC: intake.handle}, poll_seconds=settings.intake_poll_seconds
        )
        self.mail: MailListener | None = None
        if settings.smtp_port is not None:
            self.mail = MailListener(
                receiver_for(settings, db, dispatcher),
                host=settings.smtp_host,
                port=settings.smtp_port,
                max_bytes=settings.smtp_max_bytes,
            )

    def start(self) -> None:
        if self.mail is not None:
            self.mail.start()
        self.consumer.start()
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.consumer.stop()
        if self.mail is not None:
            self.mail.stop()
