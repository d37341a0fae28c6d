"""SQL for agents, their immutable versions, episodes and the governance audit log."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from loom.db.database import Conn
from loom.db.memory import vector_literal

_AGENT_COLUMNS = """
    id, workspace_id, name, description, maturity, live_version, latest_version, created_at,
    updated_at
"""

_EPISODE_COLUMNS = """
    id, agent_id, agent_version, kind, run_id, node_run_id, thread_id, parent_episode_id,
    input, tool_calls, decisions, recalled, outcome, output, error, usage, cost_usd,
    duration_ms, feedback_rating, feedback_correction, feedback_at, summary, created_at,
    finished_at
"""


def insert_agent(conn: Conn, *, workspace_id: UUID, name: str, description: str) -> dict[str, Any]:
    row = conn.execute(
        f"INSERT INTO agents (workspace_id, name, description) VALUES (%s, %s, %s) "
        f"RETURNING {_AGENT_COLUMNS}",
        (workspace_id, name, description),
    ).fetchone()
    assert row is not None
    return row


def get_agent(conn: Conn, agent_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
    suffix = " FOR UPDATE" if lock else ""
    return conn.execute(
        f"SELECT {_AGENT_COLUMNS} FROM agents WHERE id = %s AND deleted_at IS NULL{suffix}",
        (agent_id,),
    ).fetchone()


def existing_agents(conn: Conn, agent_ids: list[UUID]) -> set[UUID]:
    rows = conn.execute(
        "SELECT id FROM agents WHERE id = ANY(%s) AND deleted_at IS NULL", (agent_ids,)
    ).fetchall()
    return {r["id"] for r in rows}


def list_agents(conn: Conn, limit: int, offset: int) -> list[dict[str, Any]]:
    return conn.execute(
        f"SELECT {_AGENT_COLUMNS} FROM agents WHERE deleted_at IS NULL "
        "ORDER BY created_at DESC LIMIT %s OFFSET %s",
        (limit, offset),
    ).fetchall()


def add_version(
    conn: Conn,
    *,
    workspace_id: UUID,
    agent_id: UUID,
    name: str,
    description: str,
    spec: dict[str, Any],
    checksum: str,
    created_by: UUID | None,
    publish: bool,
) -> int:
    """Append the next version (the agent row locked by the caller)."""
    row = conn.execute(
        """
        WITH bumped AS (
            UPDATE agents SET latest_version = latest_version + 1,
                   live_version = CASE WHEN %(publish)s THEN latest_version + 1
                                       ELSE live_version END,
                   name = %(name)s, description = %(description)s, updated_at = now()
            WHERE id = %(agent)s RETURNING latest_version
        )
        INSERT INTO agent_versions (workspace_id, agent_id, version, spec, checksum, created_by)
        SELECT %(ws)s, %(agent)s, latest_version, %(spec)s, %(checksum)s, %(by)s FROM bumped
        RETURNING version
        """,
        {
            "publish": publish,
            "name": name,
            "description": description,
            "agent": agent_id,
            "ws": workspace_id,
            "spec": Jsonb(spec),
            "checksum": checksum,
            "by": created_by,
        },
    ).fetchone()
    assert row is not None
    return int(row["version"])


def get_version(conn: Conn, agent_id: UUID, version: int) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT agent_id, version, spec, checksum, created_by, created_at "
        "FROM agent_versions WHERE agent_id = %s AND version = %s",
        (agent_id, version),
    ).fetchone()


def list_versions(conn: Conn, agent_id: UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT version, checksum, created_by, created_at FROM agent_versions "
        "WHERE agent_id = %s ORDER BY version",
        (agent_id,),
    ).fetchall()


def set_live_version(conn: Conn, agent_id: UUID, version: int) -> None:
    conn.execute(
        "UPDATE agents SET live_version = %s, updated_at = now() WHERE id = %s",
        (version, agent_id),
    )


def set_maturity(conn: Conn, agent_id: UUID, maturity: str) -> None:
    conn.execute(
        "UPDATE agents SET maturity = %s, updated_at = now() WHERE id = %s", (maturity, agent_id)
    )


def soft_delete(conn: Conn, agent_id: UUID) -> bool:
    cur = conn.execute(
        "UPDATE agents SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL", (agent_id,)
    )
    return cur.rowcount == 1


def audit(
    conn: Conn,
    *,
    workspace_id: UUID,
    agent_id: UUID,
    event: str,
    detail: dict[str, Any],
    agent_version: int | None = None,
    episode_id: UUID | None = None,
    actor: str = "system",
) -> None:
    conn.execute(
        "INSERT INTO agent_audit (workspace_id, agent_id, agent_version, episode_id, event, "
        "detail, actor) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (workspace_id, agent_id, agent_version, episode_id, event, Jsonb(detail), actor),
    )


def list_audit(
    conn: Conn, agent_id: UUID, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT id, agent_version, episode_id, event, detail, actor, created_at "
        "FROM agent_audit WHERE agent_id = %s AND (%s::bigint IS NULL OR id < %s) "
        "ORDER BY id DESC LIMIT %s",
        (agent_id, before, before, limit),
    ).fetchall()


def open_episode(
    conn: Conn,
    *,
    workspace_id: UUID,
    agent_id: UUID,
    agent_version: int,
    kind: str,
    input: Any,
    run_id: UUID | None,
    node_run_id: UUID | None,
    thread_id: UUID | None,
    parent_episode_id: UUID | None,
) -> UUID:
    row = conn.execute(
        "INSERT INTO episodes (workspace_id, agent_id, agent_version, kind, input, run_id, "
        "node_run_id, thread_id, parent_episode_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            workspace_id,
            agent_id,
            agent_version,
            kind,
            Jsonb(input),
            run_id,
            node_run_id,
            thread_id,
            parent_episode_id,
        ),
    ).fetchone()
    assert row is not None
    episode_id: UUID = row["id"]
    return episode_id


def close_episode(
    conn: Conn,
    episode_id: UUID,
    *,
    outcome: str,
    output: Any,
    error: str | None,
    tool_calls: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    recalled: list[dict[str, Any]],
    usage: dict[str, Any],
    cost_usd: float,
    duration_ms: int,
    summary: str,
    embedding: list[float] | None,
) -> None:
    conn.execute(
        """
        UPDATE episodes SET outcome = %s, output = %s, error = %s, tool_calls = %s,
               decisions = %s, recalled = %s, usage = %s, cost_usd = %s, duration_ms = %s,
               summary = %s, embedding = %s::vector, finished_at = now()
        WHERE id = %s
        """,
        (
            outcome,
            Jsonb(output),
            error,
            Jsonb(tool_calls),
            Jsonb(decisions),
            Jsonb(recalled),
            Jsonb(usage),
            cost_usd,
            duration_ms,
            summary,
            _maybe_vector(embedding),
            episode_id,
        ),
    )


def get_episode(conn: Conn, episode_id: UUID) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE id = %s", (episode_id,)
    ).fetchone()


def list_episodes(conn: Conn, agent_id: UUID, *, limit: int, offset: int) -> list[dict[str, Any]]:
    return conn.execute(
        f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE agent_id = %s "
        "ORDER BY created_at DESC LIMIT %s OFFSET %s",
        (agent_id, limit, offset),
    ).fetchall()


def set_feedback(
    conn: Conn, episode_id: UUID, rating: int, correction: str | None
) -> dict[str, Any] | None:
    return conn.execute(
        f"""
        UPDATE episodes SET feedback_rating = %s, feedback_correction = %s, feedback_at = now()
        WHERE id = %s RETURNING {_EPISODE_COLUMNS}
        """,
        (rating, correction, episode_id),
    ).fetchone()


_RECALL = """
    SELECT id, summary, feedback_rating, feedback_correction, outcome, created_at,
           embedding <=> %(q)s::vector AS distance
    FROM episodes
    WHERE agent_id = %(agent)s AND embedding IS NOT NULL
    ORDER BY {order}
    LIMIT %(limit)s
"""


def recall(conn: Conn, agent_id: UUID, embedding: list[float], limit: int) -> list[dict[str, Any]]:
    """The agent's finished episodes nearest to ``embedding`` (cosine distance).

    The HNSW index finds the nearest rows of every agent, and the filter to this agent
    applies after it: an agent with few episodes among many may get fewer than ``limit``
    back. Then an exact search over just its episodes answers instead (``+ 0`` keeps the
    planner off the index); it is cheap exactly when the index fell short."""
    params = {"q": vector_literal(embedding), "agent": agent_id, "limit": limit}
    conn.execute("SET LOCAL hnsw.ef_search = 100")
    found = conn.execute(_RECALL.format(order="embedding <=> %(q)s::vector"), params).fetchall()
    if len(found) >= limit:
        return found
    return conn.execute(
        _RECALL.format(order="(embedding <=> %(q)s::vector) + 0"), params
    ).fetchall()


def readiness_counts(conn: Conn, agent_id: UUID, version: int) -> dict[str, Any]:
    """What readiness is computed from: one version's finished episodes."""
    row = conn.execute(
        """
        SELECT count(*) FILTER (WHERE outcome <> 'running') AS episodes,
               count(*) FILTER (WHERE outcome = 'success') AS successes,
               count(*) FILTER (WHERE feedback_rating IS NOT NULL) AS rated,
               count(*) FILTER (WHERE feedback_rating > 0) AS positive,
               count(*) FILTER (WHERE feedback_rating <= 0) AS negative,
               coalesce(sum(jsonb_array_length(decisions)) FILTER (WHERE outcome <> 'running'),
                        0) AS decisions,
               coalesce(sum((SELECT count(*) FROM jsonb_array_elements(decisions) d
                             WHERE d ->> 'verdict' = 'deny')), 0) AS violations
        FROM episodes WHERE agent_id = %s AND agent_version = %s AND kind <> 'exam'
        """,
        (agent_id, version),
    ).fetchone()
    assert row is not None
    return dict(row)


def _maybe_vector(embedding: list[float] | None) -> str | None:
    return None if embedding is None else vector_literal(embedding)
