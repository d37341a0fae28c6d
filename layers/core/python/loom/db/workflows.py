"""SQL for workflows and their immutable versions."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from loom.db.async_database import AsyncConn
from loom.db.database import Conn

_WORKFLOW_COLUMNS = """
    id, workspace_id, name, description, live_version, latest_version, deployed_version,
    deployment_state, concurrency_policy, lease_ttl_seconds, deployed_at, created_at,
    updated_at
"""


def insert_workflow(
    conn: Conn, *, workspace_id: UUID, name: str, description: str, created_by: UUID | None
) -> dict[str, Any]:
    row = conn.execute(
        f"INSERT INTO workflows (workspace_id, name, description, created_by) "
        f"VALUES (%s, %s, %s, %s) RETURNING {_WORKFLOW_COLUMNS}",
        (workspace_id, name, description, created_by),
    ).fetchone()
    assert row is not None
    return row


_WORKFLOW = f"SELECT {_WORKFLOW_COLUMNS} FROM workflows WHERE id = %s AND deleted_at IS NULL"


def get_workflow(conn: Conn, workflow_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
    suffix = " FOR UPDATE" if lock else ""
    return conn.execute(_WORKFLOW + suffix, (workflow_id,)).fetchone()


async def read_workflow(conn: AsyncConn, workflow_id: UUID) -> dict[str, Any] | None:
    """``get_workflow``, awaited (the API)."""
    return await (await conn.execute(_WORKFLOW, (workflow_id,))).fetchone()


def find_workflow_by_name(conn: Conn, name: str) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT {_WORKFLOW_COLUMNS} FROM workflows WHERE name = %s AND deleted_at IS NULL "
        "ORDER BY created_at LIMIT 1",
        (name,),
    ).fetchone()


def list_workflows(conn: Conn, limit: int, offset: int) -> list[dict[str, Any]]:
    return conn.execute(
        f"SELECT {_WORKFLOW_COLUMNS} FROM workflows WHERE deleted_at IS NULL "
        "ORDER BY created_at DESC LIMIT %s OFFSET %s",
        (limit, offset),
    ).fetchall()


def add_version(
    conn: Conn,
    *,
    workspace_id: UUID,
    workflow_id: UUID,
    definition: dict[str, Any],
    checksum: str,
    created_by: UUID | None,
    publish: bool,
) -> int:
    """Append the next version (the workflow row must be locked by the caller)."""
    row = conn.execute(
        """
        WITH bumped AS (
            UPDATE workflows SET latest_version = latest_version + 1,
                   live_version = CASE WHEN %(publish)s THEN latest_version + 1
                                       ELSE live_version END,
                   name = %(name)s, description = %(description)s, updated_at = now()
            WHERE id = %(wf)s RETURNING latest_version
        )
        INSERT INTO workflow_versions (workspace_id, workflow_id, version, definition, checksum,
                                       created_by)
        SELECT %(ws)s, %(wf)s, latest_version, %(definition)s, %(checksum)s, %(by)s FROM bumped
        RETURNING version
        """,
        {
            "publish": publish,
            "name": definition["name"],
            "description": definition.get("description", ""),
            "wf": workflow_id,
            "ws": workspace_id,
            "definition": Jsonb(definition),
            "checksum": checksum,
            "by": created_by,
        },
    ).fetchone()
    assert row is not None
    return int(row["version"])


_VERSION = (
    "SELECT workflow_id, version, definition, checksum, created_by, created_at "
    "FROM workflow_versions WHERE workflow_id = %s AND version = %s"
)


def get_version(conn: Conn, workflow_id: UUID, version: int) -> dict[str, Any] | None:
    return conn.execute(_VERSION, (workflow_id, version)).fetchone()


async def read_version(conn: AsyncConn, workflow_id: UUID, version: int) -> dict[str, Any] | None:
    """``get_version``, awaited (the API)."""
    return await (await conn.execute(_VERSION, (workflow_id, version))).fetchone()


def list_versions(conn: Conn, workflow_id: UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT version, checksum, created_by, created_at FROM workflow_versions "
        "WHERE workflow_id = %s ORDER BY version",
        (workflow_id,),
    ).fetchall()


def set_live_version(conn: Conn, workflow_id: UUID, version: int) -> None:
    conn.execute(
        "UPDATE workflows SET live_version = %s, updated_at = now() WHERE id = %s",
        (version, workflow_id),
    )


def soft_delete(conn: Conn, workflow_id: UUID) -> bool:
    cur = conn.execute(
        "UPDATE workflows SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL",
        (workflow_id,),
    )
    return cur.rowcount == 1
