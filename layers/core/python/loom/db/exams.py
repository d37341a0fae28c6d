"""SQL for readiness and graduation exams: the evidence an agent version has gathered since
its maturity last changed, the exam rows, and the locator the periodic worker uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from loom.db.database import Conn

_EXAM_COLUMNS = """
    id, agent_id, agent_version, from_level, to_level, status, cases, report, started_by,
    created_at, finished_at
"""


class ExamRunning(Exception):
    """Another exam of this agent version is running (the unique index said so)."""


def readiness_facts(conn: Conn, agent_id: UUID, version: int) -> dict[str, Any]:
    """What readiness is computed from: the version's finished episodes (exams excluded)
    since the agent's maturity last changed, so each level is earned with evidence
    gathered at the level below it."""
    row = conn.execute(
        """
        WITH since AS (
            SELECT max(created_at) AS at FROM agent_audit
            WHERE agent_id = %(agent)s AND event IN ('promoted', 'maturity_set')
        )
        SELECT (SELECT at FROM since) AS since,
               count(*) AS episodes,
               count(*) FILTER (WHERE outcome = 'success') AS successes,
               count(feedback_rating) AS rated,
               avg(feedback_rating)::float8 AS mean_rating,
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM jsonb_array_elements(decisions) d
                   WHERE d ->> 'verdict' = 'deny')) AS violating_episodes,
               coalesce(sum((SELECT count(*) FROM jsonb_array_elements(decisions) d
                             WHERE d ->> 'verdict' = 'deny')), 0) AS violations
        FROM episodes
        WHERE agent_id = %(agent)s AND agent_version = %(version)s AND kind <> 'exam'
          AND outcome <> 'running'
          AND created_at > coalesce((SELECT at FROM since), '-infinity')
        """,
        {"agent": agent_id, "version": version},
    ).fetchone()
    assert row is not None
    return dict(row)


def expire_stale(conn: Conn, agent_id: UUID, version: int, started_before: datetime) -> int:
    """Mark exams of this version still 'running' since before ``started_before`` as
    errors: their process died, and the unique index would block every new exam."""
    cur = conn.execute(
        """
        UPDATE agent_exams SET status = 'error', finished_at = now(),
               report = jsonb_build_object('error', 'The exam was interrupted before it '
                                           'finished (its process stopped).')
        WHERE agent_id = %s AND agent_version = %s AND status = 'running' AND created_at < %s
        """,
        (agent_id, version, started_before),
    )
    return cur.rowcount


def insert_exam(
    conn: Conn,
    *,
    workspace_id: UUID,
    agent_id: UUID,
    agent_version: int,
    from_level: str,
    to_level: str,
    cases: dict[str, Any],
    started_by: str,
) -> dict[str, Any]:
    """A running exam; ``ExamRunning`` when one of this version already runs (the
    transaction is then aborted, as after any failed statement)."""
    try:
        row = conn.execute(
            f"""
            INSERT INTO agent_exams (workspace_id, agent_id, agent_version, from_level,
                                     to_level, cases, started_by)
            VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_EXAM_COLUMNS}
            """,
            (workspace_id, agent_id, agent_version, from_level, to_level, Jsonb(cases), started_by),
        ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise ExamRunning from None
    assert row is not None
    return row


def finish_exam(
    conn: Conn, exam_id: UUID, status: str, report: dict[str, Any]
) -> dict[str, Any] | None:
    return conn.execute(
        f"""
        UPDATE agent_exams SET status = %s, report = %s, finished_at = now()
        WHERE id = %s AND status = 'running' RETURNING {_EXAM_COLUMNS}
        """,
        (status, Jsonb(report), exam_id),
    ).fetchone()


def get_exam(conn: Conn, agent_id: UUID, exam_id: UUID) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT {_EXAM_COLUMNS} FROM agent_exams WHERE id = %s AND agent_id = %s",
        (exam_id, agent_id),
    ).fetchone()


def list_exams(conn: Conn, agent_id: UUID, *, limit: int, offset: int) -> list[dict[str, Any]]:
    return conn.execute(
        f"SELECT {_EXAM_COLUMNS} FROM agent_exams WHERE agent_id = %s "
        "ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
        (agent_id, limit, offset),
    ).fetchall()


def locate_candidates(
    conn: Conn, min_episodes: int, after: UUID, limit: int
) -> list[tuple[UUID, UUID]]:
    """(workspace, agent) pairs the worker should check, in agent id order after ``after``
    (a system transaction)."""
    rows = conn.execute(
        "SELECT workspace_id, agent_id FROM loom_locate_exam_candidates(%s, %s, %s)",
        (min_episodes, after, limit),
    ).fetchall()
    return [(r["workspace_id"], r["agent_id"]) for r in rows]
