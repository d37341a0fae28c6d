"""Dead letters: events whose handling kept failing, kept with the last error until a
person replays them (after fixing the cause) through the queue they came from."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from loom.db import queue as repo
from loom.db.database import Database
from loom.errors import Conflict, NotFound
from loom.triggers.queue import EventQueue


def list_dead_letters(
    db: Database,
    workspace_id: UUID,
    *,
    topic: str | None = None,
    replayed: bool | None = None,
    limit: int = 50,
    before: datetime | None = None,
) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        return repo.list_dead_letters(
            conn, topic=topic, replayed=replayed, limit=limit, before=before
        )


def get_dead_letter(db: Database, workspace_id: UUID, dead_letter_id: UUID) -> dict[str, Any]:
    with db.tenant(workspace_id) as conn:
        row = repo.get_dead_letter(conn, dead_letter_id)
    if row is None:
        raise _not_found(dead_letter_id)
    return row


def replay(db: Database, queue: EventQueue, workspace_id: UUID, dead_letter_id: UUID) -> int:
    """Queue the dead letter's event again, once; the id of the queued message. The event
    keeps its identity, so if its run was started meanwhile, no second run starts."""
    with db.tenant(workspace_id) as conn:
        row = repo.mark_replayed(conn, dead_letter_id)
        if row is None:
            found = repo.get_dead_letter(conn, dead_letter_id)
            if found is None:
                raise _not_found(dead_letter_id)
            raise Conflict(
                f"Dead letter {dead_letter_id} was replayed at {found['replayed_at']}.",
                solution="A dead letter is replayed once; if it failed again, it is a new "
                "dead letter: replay that one.",
            )
        message = queue.send(
            workspace_id,
            row["topic"],
            row["payload"],
            dedupe_key=f"replay:{dead_letter_id}",
            within=conn,
        )
    assert message is not None  # the key is this dead letter's, marked replayed just now
    return message.id


def _not_found(dead_letter_id: UUID) -> NotFound:
    return NotFound(
        f"Dead letter {dead_letter_id} not found.",
        solution="GET /v1/dead-letters lists this workspace's dead letters.",
    )
