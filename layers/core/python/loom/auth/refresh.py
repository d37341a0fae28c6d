"""Refresh tokens: opaque, single use, and grouped in families.

A sign-in starts a family. Every refresh marks the presented token used and issues the
next one of the same family, with a fresh TTL. A used token presented again means two
parties hold the family (a stolen token, or a client replaying an old one): the whole
family is revoked, so the thief and the owner both have to sign in again, and the request
answers 401. Only SHA-256 hashes are stored; the token itself is 256 random bits, so a
fast hash is enough (nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from uuid import UUID

from loom.auth.principal import Unauthorized
from loom.db import identity as repo
from loom.db.database import Conn, Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rotated:
    user_id: UUID
    workspace_id: UUID
    family_id: UUID
    refresh_token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_family(conn: Conn, *, user_id: UUID, workspace_id: UUID, ttl_seconds: int) -> str:
    """A new session's first refresh token (in the caller's unit of work)."""
    return _issue(
        conn,
        user_id=user_id,
        workspace_id=workspace_id,
        family_id=uuid.uuid4(),
        ttl_seconds=ttl_seconds,
    )


def rotate(db: Database, token: str, *, ttl_seconds: int) -> Rotated:
    """Spend ``token`` and return its successor; reuse revokes the family (committed)."""
    rotated: Rotated | None = None
    with db.system() as conn:
        row = repo.lock_refresh_token(conn, hash_token(token))
        if row is not None and row["revoked_at"] is None:
            if row["used_at"] is not None:
                repo.revoke_refresh_family(conn, row["family_id"])
                log.warning("refresh token reused; revoked family %s", row["family_id"])
            elif not row["expired"] and row["session_workspace"] is not None:
                repo.mark_refresh_token_used(conn, row["id"])
                successor = _issue(
                    conn,
                    user_id=row["user_id"],
                    workspace_id=row["session_workspace"],
                    family_id=row["family_id"],
                    ttl_seconds=ttl_seconds,
                )
                rotated = Rotated(
                    row["user_id"], row["session_workspace"], row["family_id"], successor
                )
    if rotated is None:
        raise refused()
    return rotated


def revoke_family_of(db: Database, token: str) -> None:
    """End the session ``token`` belongs to; unknown tokens are ignored."""
    with db.system() as conn:
        row = repo.lock_refresh_token(conn, hash_token(token))
        if row is not None:
            repo.revoke_refresh_family(conn, row["family_id"])


def revoke_family(db: Database, family_id: UUID) -> None:
    with db.system() as conn:
        repo.revoke_refresh_family(conn, family_id)


def refused() -> Unauthorized:
    return Unauthorized(
        "The refresh token is invalid, expired or already used.",
        solution="Sign in again (POST /v1/auth/login).",
    )


def _issue(
    conn: Conn, *, user_id: UUID, workspace_id: UUID, family_id: UUID, ttl_seconds: int
) -> str:
    token = secrets.token_urlsafe(32)
    repo.insert_refresh_token(
        conn,
        user_id=user_id,
        workspace_id=workspace_id,
        family_id=family_id,
        token_hash=hash_token(token),
        ttl_seconds=ttl_seconds,
    )
    return token
