"""SQL for chat threads with agents: threads, their messages and running summary, and the
claim that lets one turn at a time run in a thread."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from loom.db.database import Conn

_THREAD_COLUMNS = """
    t.id, t.agent_id, t.title, t.summary, t.summarized_through, t.created_by,
    t.turn_started_at, t.created_at, t.updated_at
"""
_MESSAGE_COLUMNS = "id, role, content, episode_id, tool_calls, created_at"


def insert_thread(
    conn: Conn, *, workspace_id: UUID, agent_id: UUID, title: str, created_by: UUID | None
) -> UUID:
    row = conn.execute(
        "INSERT INTO threads (workspace_id, agent_id, title, created_by) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        (workspace_id, agent_id, title, created_by),
    ).fetchone()
    assert row is not None
    thread_id: UUID = row["id"]
    return thread_id


def get_thread(conn: Conn, thread_id: UUID) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT {_THREAD_COLUMNS} FROM threads t WHERE t.id = %s", (thread_id,)
    ).fetchone()


def list_threads(conn: Conn, agent_id: UUID, *, limit: int, offset: int) -> list[dict[str, Any]]:
    """The agent's threads, latest activity first, with their message counts."""
    return conn.execute(
        f"""
        SELECT {_THREAD_COLUMNS},
               (SELECT count(*) FROM thread_messages m WHERE m.thread_id = t.id) AS messages
        FROM threads t WHERE t.agent_id = %s
        ORDER BY t.updated_at DESC, t.id LIMIT %s OFFSET %s
        """,
        (agent_id, limit, offset),
    ).fetchall()


def claim_turn(conn: Conn, thread_id: UUID, stale_after_seconds: float) -> bool:
    """Take the thread for one turn: refused while another turn holds it, unless that
    turn started more than ``stale_after_seconds`` ago (its process died)."""
    row = conn.execute(
        """
        UPDATE threads SET turn_started_at = now(), updated_at = now()
        WHERE id = %s AND (turn_started_at IS NULL
                           OR turn_started_at < now() - make_interval(secs => %s))
        RETURNING id
        """,
        (thread_id, stale_after_seconds),
    ).fetchone()
    return row is not None


def release_turn(conn: Conn, thread_id: UUID) -> None:
    conn.execute(
        "UPDATE threads SET turn_started_at = NULL, updated_at = now() WHERE id = %s",
        (thread_id,),
    )


def add_message(
    conn: Conn,
    *,
    workspace_id: UUID,
    thread_id: UUID,
    role: str,
    content: str,
    episode_id: UUID | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> int:
    row = conn.execute(
        "INSERT INTO thread_messages (workspace_id, thread_id, role, content, episode_id, "
        "tool_calls) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (workspace_id, thread_id, role, content, episode_id, Jsonb(tool_calls or [])),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def set_message_episode(conn: Conn, message_id: int, episode_id: UUID) -> None:
    conn.execute(
        "UPDATE thread_messages SET episode_id = %s WHERE id = %s", (episode_id, message_id)
    )


def messages_after(conn: Conn, thread_id: UUID, after: int, *, limit: int) -> list[dict[str, Any]]:
    """A page of messages with ids above ``after``, oldest first."""
    return conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM thread_messages WHERE thread_id = %s AND id > %s "
        "ORDER BY id LIMIT %s",
        (thread_id, after, limit),
    ).fetchall()


def newest_messages(
    conn: Conn, thread_id: UUID, *, after: int, before: int, limit: int
) -> list[dict[str, Any]]:
    """The last ``limit`` messages with ``after < id < before``, oldest first."""
    rows = conn.execute(
        f"""
        SELECT {_MESSAGE_COLUMNS} FROM thread_messages
        WHERE thread_id = %s AND id > %s AND id < %s ORDER BY id DESC LIMIT %s
        """,
        (thread_id, after, before, limit),
    ).fetchall()
    return list(reversed(rows))


def save_summary(conn: Conn, thread_id: UUID, summary: str, through: int) -> None:
    """Replace the summary with one covering every message up to ``through``, unless the
    stored one already covers as much."""
    conn.execute(
        "UPDATE threads SET summary = %s, summarized_through = %s, updated_at = now() "
        "WHERE id = %s AND summarized_through < %s",
        (summary, through, thread_id, through),
    )
