"""SQL for users, workspaces, memberships, refresh tokens, invitations and API keys.

Users and refresh tokens are global tables; everything else here is tenant data, read and
written in ``Database.tenant`` units of work; what authentication reads on every request
is awaited on an ``AsyncDatabase``. The ``locate_*`` functions are the only
cross-workspace reads: SECURITY DEFINER functions owned by ``loom_locator`` (migration
0003) that return ``(workspace_id, id)``-style pairs and nothing else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from loom.db.database import Conn

Row = dict[str, Any]

# Users (global) ---------------------------------------------------------------------


def insert_user(conn: Conn, *, email: str, password_hash: str | None) -> Row:
    """Raises ``psycopg.errors.UniqueViolation`` when the email is taken."""
    row = conn.execute(
        "INSERT INTO users (email, password_hash) VALUES (%s, %s) "
        "RETURNING id, email, display_name, created_at",
        (email, password_hash),
    ).fetchone()
    assert row is not None
    return row


def find_user_by_email(conn: Conn, email: str) -> Row | None:
    return conn.execute(
        "SELECT id, email, password_hash, disabled FROM users WHERE lower(email) = lower(%s)",
        (email,),
    ).fetchone()


def get_user(conn: Conn, user_id: UUID) -> Row | None:
    return conn.execute(
        "SELECT id, email, display_name, disabled, created_at FROM users WHERE id = %s",
        (user_id,),
    ).fetchone()


def set_password_hash(conn: Conn, user_id: UUID, password_hash: str) -> None:
    conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))


# Workspaces and memberships (tenant) ------------------------------------------------


def insert_workspace(conn: Conn, *, workspace_id: UUID, name: str) -> Row:
    row = conn.execute(
        "INSERT INTO workspaces (id, name) VALUES (%s, %s) RETURNING id, name, created_at",
        (workspace_id, name),
    ).fetchone()
    assert row is not None
    return row


def get_workspace(conn: Conn, workspace_id: UUID, *, lock: bool = False) -> Row | None:
    """With ``lock``, the row serialises membership changes (the last-owner rule)."""
    suffix = " FOR UPDATE" if lock else ""
    return conn.execute(
        f"SELECT id, name, created_at FROM workspaces WHERE id = %s{suffix}", (workspace_id,)
    ).fetchone()


def insert_membership(conn: Conn, *, workspace_id: UUID, user_id: UUID, role: str) -> None:
    """Raises ``psycopg.errors.UniqueViolation`` when the user is already a member."""
    conn.execute(
        "INSERT INTO memberships (workspace_id, user_id, role) VALUES (%s, %s, %s)",
        (workspace_id, user_id, role),
    )


ACTIVE_ROLE = (
    "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id "
    "WHERE m.workspace_id = %s AND m.user_id = %s AND NOT u.disabled"
)


def get_active_role(conn: Conn, *, workspace_id: UUID, user_id: UUID) -> str | None:
    """The member's role, or None when not a member or the account is disabled."""
    row = conn.execute(ACTIVE_ROLE, (workspace_id, user_id)).fetchone()
    return None if row is None else str(row["role"])


_MEMBER_COLUMNS = "m.user_id, u.email, u.display_name, m.role, m.created_at"


def list_members(conn: Conn, workspace_id: UUID) -> list[Row]:
    return conn.execute(
        f"SELECT {_MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id "
        "WHERE m.workspace_id = %s ORDER BY m.created_at, m.user_id",
        (workspace_id,),
    ).fetchall()


def get_member(conn: Conn, *, workspace_id: UUID, user_id: UUID) -> Row | None:
    return conn.execute(
        f"SELECT {_MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id "
        "WHERE m.workspace_id = %s AND m.user_id = %s",
        (workspace_id, user_id),
    ).fetchone()


def is_member_email(conn: Conn, *, workspace_id: UUID, email: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id "
        "WHERE m.workspace_id = %s AND lower(u.email) = lower(%s)",
        (workspace_id, email),
    ).fetchone()
    return row is not None


def count_owners(conn: Conn, workspace_id: UUID) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM memberships WHERE workspace_id = %s AND role = 'owner'",
        (workspace_id,),
    ).fetchone()
    assert row is not None
    return int(row["n"])


def update_member_role(conn: Conn, *, workspace_id: UUID, user_id: UUID, role: str) -> None:
    conn.execute(
        "UPDATE memberships SET role = %s WHERE workspace_id = %s AND user_id = %s",
        (role, workspace_id, user_id),
    )


def delete_member(conn: Conn, *, workspace_id: UUID, user_id: UUID) -> None:
    conn.execute(
        "DELETE FROM memberships WHERE workspace_id = %s AND user_id = %s",
        (workspace_id, user_id),
    )


def locate_memberships(conn: Conn, user_id: UUID) -> list[tuple[UUID, str]]:
    """Every workspace the user belongs to, with the role, oldest membership first."""
    rows = conn.execute(
        "SELECT workspace_id, role FROM loom_locate_memberships(%s)", (user_id,)
    ).fetchall()
    return [(row["workspace_id"], str(row["role"])) for row in rows]


# Refresh tokens (global) ------------------------------------------------------------


def insert_refresh_token(
    conn: Conn,
    *,
    user_id: UUID,
    workspace_id: UUID,
    family_id: UUID,
    token_hash: str,
    ttl_seconds: int,
) -> None:
    conn.execute(
        "INSERT INTO refresh_tokens (user_id, session_workspace, family_id, token_hash, "
        "expires_at) VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))",
        (user_id, workspace_id, family_id, token_hash, ttl_seconds),
    )


def lock_refresh_token(conn: Conn, token_hash: str) -> Row | None:
    """The token row, locked, so two uses of one token are decided one after the other."""
    return conn.execute(
        "SELECT id, user_id, session_workspace, family_id, used_at, revoked_at, "
        "expires_at <= now() AS expired FROM refresh_tokens WHERE token_hash = %s FOR UPDATE",
        (token_hash,),
    ).fetchone()


def mark_refresh_token_used(conn: Conn, token_id: UUID) -> None:
    conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = %s", (token_id,))


def revoke_refresh_family(conn: Conn, family_id: UUID) -> None:
    conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = %s AND revoked_at IS NULL",
        (family_id,),
    )


def revoke_sessions(conn: Conn, *, user_id: UUID, workspace_id: UUID) -> None:
    """End every session of the user in the workspace (on removal from it)."""
    conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() "
        "WHERE user_id = %s AND session_workspace = %s AND revoked_at IS NULL",
        (user_id, workspace_id),
    )


# Invitations (tenant) ---------------------------------------------------------------

_INVITATION_COLUMNS = "id, workspace_id, email, role, invited_by, expires_at, created_at"


def upsert_invitation(
    conn: Conn,
    *,
    workspace_id: UUID,
    email: str,
    role: str,
    token_hash: str,
    invited_by: UUID,
    ttl_seconds: int,
) -> Row:
    """Invite ``email``; a pending invitation for the same address is replaced."""
    row = conn.execute(
        "INSERT INTO invitations (workspace_id, email, role, token_hash, invited_by, expires_at) "
        "VALUES (%(ws)s, %(email)s, %(role)s, %(hash)s, %(by)s, "
        "        now() + make_interval(secs => %(ttl)s)) "
        "ON CONFLICT (workspace_id, lower(email)) WHERE accepted_at IS NULL DO UPDATE SET "
        "  role = EXCLUDED.role, token_hash = EXCLUDED.token_hash, "
        "  invited_by = EXCLUDED.invited_by, expires_at = EXCLUDED.expires_at, "
        "  created_at = now() "
        f"RETURNING {_INVITATION_COLUMNS}",
        {
            "ws": workspace_id,
            "email": email,
            "role": role,
            "hash": token_hash,
            "by": invited_by,
            "ttl": ttl_seconds,
        },
    ).fetchone()
    assert row is not None
    return row


def list_pending_invitations(conn: Conn, workspace_id: UUID) -> list[Row]:
    return conn.execute(
        f"SELECT {_INVITATION_COLUMNS} FROM invitations "
        "WHERE workspace_id = %s AND accepted_at IS NULL ORDER BY created_at, id",
        (workspace_id,),
    ).fetchall()


def lock_invitation(conn: Conn, invitation_id: UUID) -> Row | None:
    return conn.execute(
        f"SELECT {_INVITATION_COLUMNS}, accepted_at, expires_at <= now() AS expired "
        "FROM invitations WHERE id = %s FOR UPDATE",
        (invitation_id,),
    ).fetchone()


def accept_invitation(conn: Conn, invitation_id: UUID) -> None:
    conn.execute("UPDATE invitations SET accepted_at = now() WHERE id = %s", (invitation_id,))


def delete_pending_invitation(conn: Conn, invitation_id: UUID) -> bool:
    deleted = conn.execute(
        "DELETE FROM invitations WHERE id = %s AND accepted_at IS NULL", (invitation_id,)
    )
    return deleted.rowcount == 1


def locate_invitation(conn: Conn, token_hash: str) -> tuple[UUID, UUID] | None:
    row = conn.execute(
        "SELECT workspace_id, invitation_id FROM loom_locate_invitation(%s)", (token_hash,)
    ).fetchone()
    return None if row is None else (row["workspace_id"], row["invitation_id"])


# API keys (tenant) ------------------------------------------------------------------

_API_KEY_COLUMNS = (
    "id, workspace_id, name, prefix, scopes, created_by, expires_at, last_used_at, "
    "revoked_at, created_at"
)


def insert_api_key(
    conn: Conn,
    *,
    workspace_id: UUID,
    name: str,
    prefix: str,
    key_hash: str,
    scopes: list[str],
    created_by: UUID,
    expires_at: datetime | None,
) -> Row:
    """Raises ``psycopg.errors.UniqueViolation`` if the prefix is taken."""
    row = conn.execute(
        "INSERT INTO api_keys (workspace_id, name, prefix, key_hash, scopes, created_by, "
        f"expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_API_KEY_COLUMNS}",
        (workspace_id, name, prefix, key_hash, scopes, created_by, expires_at),
    ).fetchone()
    assert row is not None
    return row


def list_api_keys(conn: Conn, workspace_id: UUID) -> list[Row]:
    return conn.execute(
        f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE workspace_id = %s "
        "ORDER BY created_at DESC, id",
        (workspace_id,),
    ).fetchall()


# What authentication reads and writes, in pipelined units of work on an AsyncDatabase:
# the key's hash, scopes and usability, and whether its use is unrecorded for a minute
# (use is written at most once a minute, so busy keys do not write on every request).
READ_API_KEY = (
    "SELECT id, workspace_id, prefix, key_hash, scopes, revoked_at IS NOT NULL AS revoked, "
    "coalesce(expires_at <= now(), false) AS expired, "
    "coalesce(last_used_at < now() - interval '1 minute', true) AS use_unrecorded "
    "FROM api_keys WHERE id = %s"
)
TOUCH_API_KEY = "UPDATE api_keys SET last_used_at = now() WHERE id = %s"
LOCATE_API_KEY = "SELECT workspace_id, key_id FROM loom_locate_api_key(%s)"


def revoke_api_key(conn: Conn, key_id: UUID) -> bool:
    """False when no such key exists in this workspace; revoking twice is harmless."""
    revoked = conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s",
        (key_id,),
    )
    return revoked.rowcount == 1
