"""SQL for credentials. Rows hold ciphertext; metadata holds field names, never values."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from loom.db.database import Conn
from loom.errors import Conflict

Row = dict[str, Any]

_PUBLIC_COLUMNS = "id, name, type, metadata, created_at, updated_at"


def insert_credential(
    conn: Conn,
    *,
    credential_id: UUID,
    workspace_id: UUID,
    name: str,
    credential_type: str,
    ciphertext: bytes,
    nonce: bytes,
    wrapped_key: bytes,
    key_id: str,
    metadata: dict[str, Any],
    created_by: UUID | None,
) -> Row:
    try:
        row = conn.execute(
            "INSERT INTO credentials (id, workspace_id, name, type, ciphertext, nonce, "
            "wrapped_key, key_id, metadata, created_by) "
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_PUBLIC_COLUMNS}",
            (
                credential_id,
                workspace_id,
                name,
                credential_type,
                ciphertext,
                nonce,
                wrapped_key,
                key_id,
                Jsonb(metadata),
                created_by,
            ),
        ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise Conflict(
            f"A credential named {name!r} already exists in this workspace.",
            solution="Choose another name, or delete the existing credential first.",
        ) from None
    assert row is not None
    return row


def list_credentials(conn: Conn) -> list[Row]:
    return conn.execute(f"SELECT {_PUBLIC_COLUMNS} FROM credentials ORDER BY name").fetchall()


def get_credential(conn: Conn, credential_id: UUID) -> Row | None:
    return conn.execute(
        f"SELECT {_PUBLIC_COLUMNS} FROM credentials WHERE id = %s", (credential_id,)
    ).fetchone()


def get_sealed(conn: Conn, credential_id: UUID) -> Row | None:
    return conn.execute(
        "SELECT id, type, ciphertext, nonce, wrapped_key, key_id FROM credentials WHERE id = %s",
        (credential_id,),
    ).fetchone()


def delete_credential(conn: Conn, credential_id: UUID) -> bool:
    try:
        deleted = conn.execute("DELETE FROM credentials WHERE id = %s", (credential_id,))
    except psycopg.errors.ForeignKeyViolation:
        raise Conflict(
            "This credential is in use (a trigger verifies requests with it).",
            solution="Remove it from the trigger first, then delete it.",
        ) from None
    return deleted.rowcount == 1
