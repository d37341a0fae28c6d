"""SQL for the intake queue and its dead letters (the local stand-in for SQS and its DLQ).

A message is claimed by a guarded update (due, and not held by anyone), so two consumers
never both hold one; holding it sets ``locked_until`` and counts an attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from loom.db.database import Conn

Row = dict[str, Any]

_MESSAGE_COLUMNS = "id, workspace_id, topic, payload, attempts, max_attempts"
_DEAD_LETTER_COLUMNS = "id, topic, payload, error, attempts, source_id, replayed_at, created_at"


def insert_message(
    conn: Conn,
    *,
    workspace_id: UUID,
    topic: str,
    payload: dict[str, Any],
    dedupe_key: str | None,
    max_attempts: int,
    hold_seconds: float | None,
) -> Row | None:
    """Queue a message; None when one with the same dedupe key is already queued. With
    ``hold_seconds`` the sender holds it (one attempt counted) and may process it at once."""
    return conn.execute(
        f"""
        INSERT INTO queue (workspace_id, topic, payload, dedupe_key, max_attempts, attempts,
                           locked_until)
        VALUES (%(ws)s, %(topic)s, %(payload)s, %(key)s, %(max)s,
                CASE WHEN %(hold)s::float8 IS NULL THEN 0 ELSE 1 END,
                now() + make_interval(secs => %(hold)s::float8))
        ON CONFLICT (workspace_id, topic, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
        RETURNING {_MESSAGE_COLUMNS}
        """,
        {
            "ws": workspace_id,
            "topic": topic,
            "payload": Jsonb(payload),
            "key": dedupe_key,
            "max": max_attempts,
            "hold": hold_seconds,
        },
    ).fetchone()


def locate_ready(conn: Conn, topics: Sequence[str], limit: int) -> list[tuple[UUID, int]]:
    rows = conn.execute(
        "SELECT workspace_id, message_id FROM loom_locate_ready_messages(%s::text[], %s)",
        (list(topics), limit),
    ).fetchall()
    return [(r["workspace_id"], r["message_id"]) for r in rows]


def claim(conn: Conn, message_ids: Sequence[int], hold_seconds: float) -> list[Row]:
    """Hold those of ``message_ids`` that are still due and free; a message another
    consumer claimed meanwhile fails the guard after its lock is released."""
    return conn.execute(
        f"""
        UPDATE queue SET locked_until = now() + make_interval(secs => %s),
               attempts = attempts + 1
        WHERE id = ANY(%s::bigint[]) AND available_at <= now()
          AND (locked_until IS NULL OR locked_until <= now())
        RETURNING {_MESSAGE_COLUMNS}
        """,
        (hold_seconds, list(message_ids)),
    ).fetchall()


def delete_message(conn: Conn, message_id: int) -> None:
    conn.execute("DELETE FROM queue WHERE id = %s", (message_id,))


def retry_later(conn: Conn, message_id: int, *, delay_seconds: float, error: str) -> None:
    conn.execute(
        "UPDATE queue SET locked_until = NULL, last_error = %s, "
        "available_at = now() + make_interval(secs => %s) WHERE id = %s",
        (error, delay_seconds, message_id),
    )


def wait_for_lease(conn: Conn, message_id: int, *, until: datetime, workflow_id: UUID) -> None:
    """Park the message until the workflow's lease is released (the lease trigger then makes
    it due) or ``until``; the attempt it was claimed with does not count. If the lease is
    already gone, it is due at once."""
    conn.execute(
        """
        UPDATE queue SET locked_until = NULL, attempts = greatest(attempts - 1, 0),
               waiting_for = %(wf)s,
               available_at = CASE WHEN EXISTS (SELECT 1 FROM workflow_leases
                                                WHERE workflow_id = %(wf)s)
                                   THEN %(until)s ELSE now() END
        WHERE id = %(id)s
        """,
        {"wf": workflow_id, "until": until, "id": message_id},
    )


def dead_letter(conn: Conn, message_id: int, error: str) -> UUID | None:
    """Move the message to the dead letters; the dead letter's id."""
    row = conn.execute(
        """
        WITH gone AS (DELETE FROM queue WHERE id = %s RETURNING *)
        INSERT INTO dead_letters (workspace_id, topic, payload, error, attempts, source_id)
        SELECT workspace_id, topic, payload, %s, attempts, id::text FROM gone
        RETURNING id
        """,
        (message_id, error),
    ).fetchone()
    return row["id"] if row else None


def list_dead_letters(
    conn: Conn,
    *,
    topic: str | None,
    replayed: bool | None,
    limit: int,
    before: datetime | None,
) -> list[Row]:
    return conn.execute(
        f"""
        SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters
        WHERE (%(topic)s::text IS NULL OR topic = %(topic)s)
          AND (%(replayed)s::boolean IS NULL OR (replayed_at IS NOT NULL) = %(replayed)s)
          AND (%(before)s::timestamptz IS NULL OR created_at < %(before)s)
        ORDER BY created_at DESC LIMIT %(limit)s
        """,
        {"topic": topic, "replayed": replayed, "before": before, "limit": limit},
    ).fetchall()


def get_dead_letter(conn: Conn, dead_letter_id: UUID) -> Row | None:
    return conn.execute(
        f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = %s", (dead_letter_id,)
    ).fetchone()


def mark_replayed(conn: Conn, dead_letter_id: UUID) -> Row | None:
    """Mark it replayed, once: None when it was replayed already (or is not there)."""
    return conn.execute(
        f"UPDATE dead_letters SET replayed_at = now() WHERE id = %s AND replayed_at IS NULL "
        f"RETURNING {_DEAD_LETTER_COLUMNS}",
        (dead_letter_id,),
    ).fetchone()


def insert_dead_letter(
    conn: Conn,
    *,
    workspace_id: UUID,
    topic: str,
    payload: dict[str, Any],
    error: str,
    attempts: int,
    source_id: str,
) -> UUID:
    """A dead letter for a message of a queue outside Postgres (SQS on AWS); its id."""
    row = conn.execute(
        """
        INSERT INTO dead_letters (workspace_id, topic, payload, error, attempts, source_id)
        VALUES (%s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (workspace_id, topic, Jsonb(payload), error, attempts, source_id),
    ).fetchone()
    assert row is not None  # INSERT ... RETURNING returns its row
    dead_letter_id: UUID = row["id"]
    return dead_letter_id
