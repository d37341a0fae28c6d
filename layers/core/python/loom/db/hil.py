"""SQL for human-in-the-loop requests."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from loom.db.database import Conn

_COLUMNS = """
    h.id, h.run_id, h.node_run_id, n.node_id, n.attempt, h.kind, h.status, h.request,
    h.response, h.responded_by, h.channels, h.timeout_action, h.expires_at, h.created_at,
    h.responded_at
"""


def list_requests(conn: Conn, status: str | None, limit: int) -> list[dict[str, Any]]:
    return conn.execute(
        f"SELECT {_COLUMNS} FROM hil_requests h JOIN node_runs n ON n.id = h.node_run_id "
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
        SELECT {_COLUMNS} FROM answered h JOIN node_runs n ON n.id = h.node_run_id
        """,
        (status, Jsonb(response), responded_by, request_id),
    ).fetchone()


def get_request(conn: Conn, request_id: UUID) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT {_COLUMNS} FROM hil_requests h JOIN node_runs n ON n.id = h.node_run_id "
        "WHERE h.id = %s",
        (request_id,),
    ).fetchone()
