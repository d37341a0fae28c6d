"""API keys: workspace credentials for machines, held to scopes rather than a role.

A key reads ``loom_<prefix>_<secret>``: an 8-character public prefix that finds the row
(through ``loom_locate_api_key``, the only cross-workspace read) and a 40-character secret
of which only the SHA-256 is stored and compared in constant time. Secrets carry 238
random bits, so a fast hash is enough. Keys may expire and be revoked; ``last_used_at`` is
written at most once a minute. Only people with the admin role manage keys: a key cannot
create, list or revoke keys, so a leaked key cannot make itself a successor.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from loom.auth.principal import SCOPES, Principal, Role, Unauthorized
from loom.auth.service import require_user
from loom.db import identity as repo
from loom.db.async_database import AsyncDatabase
from loom.db.database import Database
from loom.errors import InvalidInput, NotFound

KEY_PREFIX = "loom_"
PREFIX_LENGTH = 8
SECRET_LENGTH = 40
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
# A prefix clash (1 in 36^8 per pair) is retried with a new key.
_ATTEMPTS = 3


def generate_key() -> tuple[str, str, str]:
    """A new key as (full key, prefix, secret)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{KEY_PREFIX}{prefix}_{secret}", prefix, secret


def parse_key(key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key, else None."""
    marker, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    well_formed = (
        marker + "_" == KEY_PREFIX
        and len(prefix) == PREFIX_LENGTH
        and len(secret) == SECRET_LENGTH
        and all(c in _PREFIX_ALPHABET for c in prefix)
        and all(c in _SECRET_ALPHABET for c in secret)
    )
    return (prefix, secret) if well_formed else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    db: Database,
    principal: Principal,
    *,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
) -> tuple[dict[str, Any], str]:
    """The new key's metadata and the key itself, which is never shown again."""
    user_id = require_user(principal, Role.ADMIN)
    wanted = _valid_scopes(scopes)
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidInput(
            "expires_at is in the past.", solution="Give a future time, or none for no expiry."
        )
    attempts_left = _ATTEMPTS
    while True:
        key, prefix, secret = generate_key()
        try:
            with db.tenant(principal.workspace_id) as conn:
                row = repo.insert_api_key(
                    conn,
                    workspace_id=principal.workspace_id,
                    name=name,
                    prefix=prefix,
                    key_hash=hash_secret(secret),
                    scopes=wanted,
                    created_by=user_id,
                    expires_at=expires_at,
                )
            return row, key
        except psycopg.errors.UniqueViolation:
            attempts_left -= 1
            if attempts_left == 0:
                raise


def list_api_keys(db: Database, principal: Principal) -> list[dict[str, Any]]:
    require_user(principal, Role.ADMIN)
    with db.tenant(principal.workspace_id) as conn:
        return repo.list_api_keys(conn, principal.workspace_id)


def revoke_api_key(db: Database, principal: Principal, key_id: UUID) -> None:
    require_user(principal, Role.ADMIN)
    with db.tenant(principal.workspace_id) as conn:
        found = repo.revoke_api_key(conn, key_id)
    if not found:
        raise NotFound("No API key with this id.", solution="List keys with GET /v1/api-keys.")


async def authenticate_api_key(db: AsyncDatabase, key: str) -> Principal:
    """The principal of a valid, unexpired, unrevoked key; ``Unauthorized`` otherwise."""
    parsed = parse_key(key)
    if parsed is None:
        raise _invalid()
    prefix, secret = parsed
    digest = hash_secret(secret)
    (located,) = await db.read(None, (repo.LOCATE_API_KEY, (prefix,)))
    if not located:
        raise _invalid()
    workspace_id, key_id = located[0]["workspace_id"], located[0]["key_id"]
    (found,) = await db.read(workspace_id, (repo.READ_API_KEY, (key_id,)))
    row = found[0] if found else None
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        raise _invalid()
    # The secret matched: saying why the key no longer works helps only its holder.
    if row["revoked"]:
        raise Unauthorized(
            "This API key has been revoked.", solution="Ask a workspace admin for a new key."
        )
    if row["expired"]:
        raise Unauthorized(
            "This API key has expired.", solution="Ask a workspace admin for a new key."
        )
    if row["use_unrecorded"]:
        async with db.tenant(workspace_id) as conn:
            await conn.execute(repo.TOUCH_API_KEY, (key_id,))
    return Principal(
        kind="api_key", workspace_id=workspace_id, key_id=key_id, scopes=frozenset(row["scopes"])
    )


def _valid_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise InvalidInput(
            f"Unknown scope(s): {', '.join(unknown)}.",
            solution=f"Use any of: {', '.join(sorted(SCOPES))}.",
            details=[{"path": "scopes", "message": f"unknown scope {s}"} for s in unknown],
        )
    if not scopes:
        raise InvalidInput("An API key needs at least one scope.", solution="Name its scopes.")
    return sorted(set(scopes))


def _invalid() -> Unauthorized:
    return Unauthorized(
        "The API key is invalid.", solution="Check the key, or ask a workspace admin for one."
    )
