"""The intake queue: at-least-once delivery with retries and dead letters.

``EventQueue`` is the seam: locally ``PostgresQueue`` (the ``queue`` table, claimed by
guarded updates, ``dead_letters`` for what keeps failing); on AWS an SQS queue with a
redrive policy to a DLQ takes its place. ``deliver`` runs one handler on one message and
settles the message by the outcome, the same for every implementation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

import psycopg

from loom.db import queue as repo
from loom.db.database import Conn, Database
from loom.errors import DatabaseUnavailable, LoomError

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True)
class Message:
    id: int
    workspace_id: UUID
    topic: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


@dataclass(frozen=True)
class Done:
    """Handled: the message is deleted. ``result`` is the handler's, for the caller."""

    result: Any = None


@dataclass(frozen=True)
class Wait:
    """Not now: the workflow's lease is held. The message waits until it is released, or
    ``until`` at the latest; the attempt does not count."""

    until: datetime
    workflow_id: UUID


@dataclass(frozen=True)
class Failed:
    error: str
    dead_letter_id: UUID | None  # set when this attempt was its last


Handler = Callable[[Message], Done | Wait]
Outcome = Done | Wait | Failed


class EventQueue(Protocol):
    def send(
        self,
        workspace_id: UUID,
        topic: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        hold: bool = False,
        within: Conn | None = None,
    ) -> Message | None:
        """Queue a message; None if one with ``dedupe_key`` is already queued. ``hold``:
        the sender keeps it (one attempt) to handle it at once. ``within``: a transaction to
        join, so the message exists exactly when what the caller wrote with it does (a queue
        in another system sends after that transaction commits)."""
        ...

    def receive(self, topics: Sequence[str], limit: int) -> list[Message]:
        """Hold up to ``limit`` due messages of ``topics``, oldest first."""
        ...

    def ack(self, message: Message) -> None: ...

    def wait(self, message: Message, until: datetime, workflow_id: UUID) -> None: ...

    def fail(self, message: Message, error: str, *, retryable: bool) -> UUID | None:
        """Count the failed attempt: retry later with backoff, or - after the last attempt,
        or at once if retrying cannot help - move it to the dead letters (their id)."""
        ...


class PostgresQueue:
    def __init__(
        self,
        db: Database,
        *,
        max_attempts: int = 5,
        retry_seconds: float = 2.0,
        visibility_seconds: float = 60.0,
    ) -> None:
        self.db = db
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.visibility_seconds = visibility_seconds

    def send(
        self,
        workspace_id: UUID,
        topic: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        hold: bool = False,
        within: Conn | None = None,
    ) -> Message | None:
        if within is None:
            with self.db.tenant(workspace_id) as conn:
                return self.send(
                    workspace_id, topic, payload, dedupe_key=dedupe_key, hold=hold, within=conn
                )
        row = repo.insert_message(
            within,
            workspace_id=workspace_id,
            topic=topic,
            payload=payload,
            dedupe_key=dedupe_key,
            max_attempts=self.max_attempts,
            hold_seconds=self.visibility_seconds if hold else None,
        )
        return _message(row) if row else None

    def receive(self, topics: Sequence[str], limit: int) -> list[Message]:
        with self.db.system() as conn:
            ready = repo.locate_ready(conn, topics, limit)
        by_workspace: dict[UUID, list[int]] = {}
        for workspace_id, message_id in ready:
            by_workspace.setdefault(workspace_id, []).append(message_id)
        held: list[Message] = []
        for workspace_id, ids in by_workspace.items():
            with self.db.tenant(workspace_id) as conn:
                held += [_message(row) for row in repo.claim(conn, ids, self.visibility_seconds)]
        return sorted(held, key=lambda m: m.id)

    def ack(self, message: Message) -> None:
        with self.db.tenant(message.workspace_id) as conn:
            repo.delete_message(conn, message.id)

    def wait(self, message: Message, until: datetime, workflow_id: UUID) -> None:
        with self.db.tenant(message.workspace_id) as conn:
            repo.wait_for_lease(conn, message.id, until=until, workflow_id=workflow_id)

    def fail(self, message: Message, error: str, *, retryable: bool) -> UUID | None:
        with self.db.tenant(message.workspace_id) as conn:
            if retryable and message.attempts < message.max_attempts:
                delay = min(self.retry_seconds * 2 ** (message.attempts - 1), MAX_BACKOFF_SECONDS)
                repo.retry_later(conn, message.id, delay_seconds=delay, error=error)
                return None
            return repo.dead_letter(conn, message.id, error)


def _message(row: dict[str, Any]) -> Message:
    return Message(
        id=int(row["id"]),
        workspace_id=row["workspace_id"],
        topic=row["topic"],
        payload=row["payload"],
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
    )


def deliver(queue: EventQueue, message: Message, handler: Handler) -> Outcome:
    """Run ``handler`` on ``message`` and settle it: delete it when handled, park it when
    it must wait, count a failure otherwise. Never raises for the handler's errors."""
    try:
        outcome = handler(message)
    except Exception as exc:  # a bug must not lose the event either: it is a failure too
        error, retryable = failure(exc)
        return fail(queue, message, error, retryable=retryable)
    if isinstance(outcome, Wait):
        queue.wait(message, outcome.until, outcome.workflow_id)
    else:
        queue.ack(message)
    return outcome


def failure(exc: Exception) -> tuple[str, bool]:
    """What to record of a handler's error, and whether trying again may help."""
    if isinstance(exc, LoomError):
        return exc.one_line(), exc.retryable
    if isinstance(exc, psycopg.Error):
        return _first_line(exc), True
    log.exception("handling an event failed")
    return f"{type(exc).__name__}: {exc}", True


def fail(queue: EventQueue, message: Message, error: str, *, retryable: bool) -> Failed:
    """Count a failed attempt at ``message`` (see ``EventQueue.fail``), and log it."""
    settled: Literal["retrying", "dead-lettered"] = "retrying"
    dead = None
    try:
        dead = queue.fail(message, error[:2000], retryable=retryable)
        settled = "dead-lettered" if dead else "retrying"
    except (DatabaseUnavailable, psycopg.Error):
        log.warning("message %s stays held until its lock expires", message.id)
    log.warning(
        "message %s of %s failed (attempt %d of %d, %s): %s",
        message.id,
        message.topic,
        message.attempts,
        message.max_attempts,
        settled,
        error,
    )
    return Failed(error, dead)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
