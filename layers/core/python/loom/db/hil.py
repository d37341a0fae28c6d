"""SQL for human-in-the-loop requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from loom.db.database import Conn

_COLUMNS = """
    h.id, h.run_id, h.node_run_id, n.node_id, n.attempt, h.episode_id, h.kind, h.status,
    h.request, h.response, h.responded_by, h.channels, h.timeout_action, h.expires_at,
    h.created_at, h.responded_at
"""


def list_requests(conn: Conn, status: str | None, limit: int) -> list[dict[str, Any]]:
    return conn.execute(
        f"SELECT {_COLUMNS} FROM hil_requests h LEFT JOIN node_runs n ON n.id = h.node_run_id "
        "WHERE (%(status)s::text IS NULL OR h.status = %(status)s) "
        "ORDER BY h.created_at DESC LIMIT %(limit)s",
        {"status": status, "limit": limit},
    ).fetchall()


def claim_response(
    conn: Conn, request_id: UUID, status: str, response: Any, responded_by: UUID | None
) -> dict[str, Any] | None:
    """Record the one response a pending request may get; None when it was not pending."""
    return conn.execute(
        f"""
        WITH answered AS (
            UPDATE hil_requests SET status = %s, response = %s, responded_by = %s,
                   responded_at = now()
            WHERE id = %s AND status = 'pending'
            RETURNING *
        )
        SELECT {_COLUMNS} FROM answered h LEFT JOIN node_runs n ON n.id = h.node_run_id
        """,
        (status, Jsonb(response), responded_by, request_id),
    ).fetchone()


def get_request(conn: Conn, request_id: UUID) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT {_COLUMNS} FROM hil_requests h LEFT JOIN node_runs n ON n.id = h.node_run_id "
        "WHERE h.id = %s",
        (request_id,),
    ).fetchone()


def file_request(
    conn: Conn,
    *,
    workspace_id: UUID,
    run_id: UUID,
    node_run_id: UUID,
    kind: str,
    request: Any,
    channels: list[str],
    timeout_action: str,
    expires_at: datetime,
    link_token_hash: str,
    task_token: str | None = None,
) -> UUID:
    """Open the node run's request, or refresh its pending one (a retried attempt files
    again with a new link: the old link stops working)."""
    row = conn.execute(
        """
        INSERT INTO hil_requests (workspace_id, run_id, node_run_id, kind, request, channels,
                                  timeout_action, expires_at, link_token_hash, task_token)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (node_run_id) WHERE status = 'pending' DO UPDATE
        SET kind = EXCLUDED.kind, request = EXCLUDED.request, channels = EXCLUDED.channels,
            timeout_action = EXCLUDED.timeout_action, expires_at = EXCLUDED.expires_at,
            link_token_hash = EXCLUDED.link_token_hash, task_token = EXCLUDED.task_token
        RETURNING id
        """,
        (
            workspace_id,
            run_id,
            node_run_id,
            kind,
            Jsonb(request),
            channels,
            timeout_action,
            expires_at,
            link_token_hash,
            task_token,
        ),
    ).fetchone()
    assert row is not None
    request_id: UUID = row["id"]
    return request_id


def file_tool_approval(
    conn: Conn,
    *,
    workspace_id: UUID,
    episode_id: UUID,
    run_id: UUID | None,
    request: Any,
    expires_at: datetime,
    link_token_hash: str,
) -> UUID:
    """Open the request that asks a person to allow one tool call of an episode."""
    row = conn.execute(
        """
        INSERT INTO hil_requests (workspace_id, run_id, episode_id, kind, request, channels,
                                  timeout_action, expires_at, link_token_hash)
        VALUES (%s, %s, %s, 'tool_approval', %s, '{in_app}', 'fail', %s, %s)
        RETURNING id
        """,
        (workspace_id, run_id, episode_id, Jsonb(request), expires_at, link_token_hash),
    ).fetchone()
    assert row is not None
    request_id: UUID = row["id"]
    return request_id


def settled(conn: Conn, request_id: UUID) -> dict[str, Any] | None:
    """The request's status and response (status ``pending`` while it waits)."""
    return conn.execute(
        "SELECT status, response, responded_by FROM hil_requests WHERE id = %s", (request_id,)
    ).fetchone()


def withdraw(conn: Conn, request_id: UUID) -> None:
    conn.execute(
        "UPDATE hil_requests SET status = 'cancelled' WHERE id = %s AND status = 'pending'",
        (request_id,),
    )


# Run in the engine's save pipeline when a run ends with a node still waiting for a person:
# its request can no longer be answered.
WITHDRAW_FOR_RUN = """
    UPDATE hil_requests SET status = 'cancelled'
    WHERE run_id = %(run_id)s AND status = 'pending'
"""


def locate_link(conn: Conn, link_token_hash: str) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT workspace_id, request_id FROM loom_locate_hil_link(%s)", (link_token_hash,)
    ).fetchone()


def locate_overdue(conn: Conn, now: datetime, limit: int) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT workspace_id, request_id FROM loom_locate_overdue_hil(%s, %s)", (now, limit)
    ).fetchall()


def time_out(conn: Conn, request_id: UUID, now: datetime) -> dict[str, Any] | None:
    """Mark an overdue pending request timed out; None when it was answered first."""
    return conn.execute(
        f"""
        WITH expired AS (
            UPDATE hil_requests SET status = 'timed_out', responded_at = %s
            WHERE id = %s AND status = 'pending' AND expires_at <= %s
            RETURNING *
        )
        SELECT {_COLUMNS} FROM expired h LEFT JOIN node_runs n ON n.id = h.node_run_id
        """,
        (now, request_id, now),
    ).fetchone()


def task_token_for(conn: Conn, run_id: UUID, node_id: str, attempt: int) -> str | None:
    """The Step Functions task token of the node run's latest request (AWS engine)."""
    row = conn.execute(
        "SELECT h.task_token FROM hil_requests h JOIN node_runs n ON n.id = h.node_run_id "
        "WHERE h.run_id = %s AND n.node_id = %s AND n.attempt = %s "
        "ORDER BY h.created_at DESC LIMIT 1",
        (run_id, node_id, attempt),
    ).fetchone()
    return row["task_token"] if row else None


def latest_for_node(conn: Conn, run_id: UUID, node_id: str) -> dict[str, Any] | None:
    """The latest request a node of ``run_id`` filed, whatever its status."""
    return conn.execute(
        f"SELECT {_COLUMNS} FROM hil_requests h JOIN node_runs n ON n.id = h.node_run_id "
        "WHERE h.run_id = %s AND n.node_id = %s ORDER BY h.created_at DESC LIMIT 1",
        (run_id, node_id),
    ).fetchone()
