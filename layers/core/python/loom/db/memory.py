"""SQL for agent memory: conversation turns with a running summary, and vector memory."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from loom.db.database import Conn


def recent_turns(conn: Conn, key: str, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` turns after the summary, oldest first."""
    rows = conn.execute(
        """
        SELECT t.id, t.role, t.content FROM memory_turns t
        WHERE t.memory_key = %(key)s AND t.id > coalesce(
            (SELECT s.summarized_through FROM memory_summaries s WHERE s.memory_key = %(key)s), 0)
        ORDER BY t.id DESC LIMIT %(limit)s
        """,
        {"key": key, "limit": limit},
    ).fetchall()
    return list(reversed(rows))


def summary(conn: Conn, key: str) -> str | None:
    row = conn.execute(
        "SELECT summary FROM memory_summaries WHERE memory_key = %s", (key,)
    ).fetchone()
    return None if row is None else str(row["summary"])


def append_turns(
    conn: Conn, workspace_id: UUID, key: str, turns: list[tuple[str, str]], run_id: UUID | None
) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO memory_turns (workspace_id, memory_key, role, content, run_id) "
            "VALUES (%s, %s, %s, %s, %s)",
            [(workspace_id, key, role, content, run_id) for role, content in turns],
        )


def save_summary(
    conn: Conn, workspace_id: UUID, key: str, text: str, summarized_through: int
) -> None:
    conn.execute(
        """
        INSERT INTO memory_summaries (workspace_id, memory_key, summary, summarized_through)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (workspace_id, memory_key) DO UPDATE
        SET summary = EXCLUDED.summary, summarized_through = EXCLUDED.summarized_through,
            updated_at = now()
        WHERE memory_summaries.summarized_through < EXCLUDED.summarized_through
        """,
        (workspace_id, key, text, summarized_through),
    )


def add_vector(
    conn: Conn,
    workspace_id: UUID,
    collection: str,
    content: str,
    embedding: list[float],
    metadata: dict[str, Any],
    run_id: UUID | None,
) -> UUID:
    row = conn.execute(
        "INSERT INTO memory_vectors (workspace_id, collection, content, metadata, embedding, "
        "run_id) VALUES (%s, %s, %s, %s, %s::vector, %s) RETURNING id",
        (workspace_id, collection, content, Jsonb(metadata), vector_literal(embedding), run_id),
    ).fetchone()
    assert row is not None
    found: UUID = row["id"]
    return found


def search_vectors(
    conn: Conn, collection: str, embedding: list[float], limit: int
) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT id, content, metadata, 1 - (embedding <=> %s::vector) AS score "
        "FROM memory_vectors WHERE collection = %s "
        "ORDER BY embedding <=> %s::vector LIMIT %s",
        (vector_literal(embedding), collection, vector_literal(embedding), limit),
    ).fetchall()


def vector_literal(values: list[float]) -> str:
    return "[" + ",".join(f"{float(v):.7g}" for v in values) + "]"
