"""SQL for the workflow builder: sessions, their turns, and what the workspace holds that a
draft may use (credential names and types, agents, workflows - never secrets)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from loom.db.database import Conn

Row = dict[str, Any]

_SESSION_COLUMNS = """
    id, model, credential_id, description, draft, gaps, questions, explanation, turns,
    workflow_id, created_by, created_at, updated_at
"""
_TURN_COLUMNS = """
    seq, message, draft, explanation, questions, gaps, diff, repair_rounds, model, created_at
"""
# Agents and workflows a draft may refer to, at most (the prompt lists fewer).
RESOURCE_LIMIT = 500


def insert_session(
    conn: Conn,
    *,
    workspace_id: UUID,
    created_by: UUID | None,
    model: str,
    credential_id: str | None,
    description: str,
) -> Row:
    row = conn.execute(
        "INSERT INTO builder_sessions (workspace_id, created_by, model, credential_id, "
        f"description) VALUES (%s, %s, %s, %s, %s) RETURNING {_SESSION_COLUMNS}",
        (workspace_id, created_by, model, credential_id, description),
    ).fetchone()
    assert row is not None
    return row


def get_session(conn: Conn, session_id: UUID, *, lock: bool = False) -> Row | None:
    suffix = " FOR UPDATE" if lock else ""
    return conn.execute(
        f"SELECT {_SESSION_COLUMNS} FROM builder_sessions WHERE id = %s{suffix}", (session_id,)
    ).fetchone()


def add_turn(
    conn: Conn,
    *,
    workspace_id: UUID,
    session_id: UUID,
    message: str,
    draft: dict[str, Any],
    explanation: str,
    questions: list[str],
    gaps: list[dict[str, Any]],
    diff: dict[str, Any] | None,
    repair_rounds: int,
    model: str,
) -> int:
    """Append a turn and make its draft the session's current one; the turn's number."""
    row = conn.execute(
        "UPDATE builder_sessions SET turns = turns + 1, draft = %s, explanation = %s, "
        "questions = %s, gaps = %s, updated_at = now() WHERE id = %s RETURNING turns",
        (Jsonb(draft), explanation, Jsonb(questions), Jsonb(gaps), session_id),
    ).fetchone()
    assert row is not None
    seq = int(row["turns"])
    conn.execute(
        "INSERT INTO builder_turns (workspace_id, session_id, seq, message, draft, explanation, "
        "questions, gaps, diff, repair_rounds, model) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            workspace_id,
            session_id,
            seq,
            message,
            Jsonb(draft),
            explanation,
            Jsonb(questions),
            Jsonb(gaps),
            Jsonb(diff) if diff is not None else None,
            repair_rounds,
            model,
        ),
    )
    return seq


def list_turns(conn: Conn, session_id: UUID) -> list[Row]:
    return conn.execute(
        f"SELECT {_TURN_COLUMNS} FROM builder_turns WHERE session_id = %s ORDER BY seq",
        (session_id,),
    ).fetchall()


def set_session_draft(
    conn: Conn, session_id: UUID, draft: dict[str, Any], gaps: list[dict[str, Any]]
) -> None:
    """The current draft after gaps were filled from the workspace (not a new turn)."""
    conn.execute(
        "UPDATE builder_sessions SET draft = %s, gaps = %s, updated_at = now() WHERE id = %s",
        (Jsonb(draft), Jsonb(gaps), session_id),
    )


def set_session_workflow(conn: Conn, session_id: UUID, workflow_id: UUID) -> None:
    conn.execute(
        "UPDATE builder_sessions SET workflow_id = %s, updated_at = now() WHERE id = %s",
        (workflow_id, session_id),
    )


def credentials_for_drafts(conn: Conn) -> list[Row]:
    """Every credential (few per workspace): a draft's credential ids are checked against
    all of them."""
    return conn.execute("SELECT id, name, type FROM credentials ORDER BY name").fetchall()


def agents_for_drafts(conn: Conn) -> list[Row]:
    return conn.execute(
        "SELECT id, name, description FROM agents WHERE deleted_at IS NULL ORDER BY name LIMIT %s",
        (RESOURCE_LIMIT,),
    ).fetchall()


def workflows_for_drafts(conn: Conn) -> list[Row]:
    return conn.execute(
        "SELECT id, name, description FROM workflows WHERE deleted_at IS NULL "
        "ORDER BY updated_at DESC LIMIT %s",
        (RESOURCE_LIMIT,),
    ).fetchall()
