"""Who is calling: the one place a request's credential becomes a ``Principal``.

Accepted: ``Authorization: Bearer <Loom access token | OIDC token | loom_ API key>`` or
``X-API-Key: loom_...`` (one of the two, not both). The workspace comes only from the
credential, never from a header or the URL. For people, membership and role are read
per request in a tenant transaction, so removing a member or changing a role takes effect
at once. Every failure is a 401 whose message says what to send, never why a guess was
close.

This runs on every request, so it runs on the event loop: Loom tokens are verified in
memory (``tokens``), keys and roles are read on an ``AsyncDatabase``. Only an OIDC token,
whose check may fetch the issuer's keys and create the user, takes a worker thread.
"""

from __future__ import annotations

from uuid import UUID

import jwt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from loom.auth import oidc, tokens
from loom.auth.api_keys import KEY_PREFIX, authenticate_api_key
from loom.auth.principal import Principal, Role, Unauthorized
from loom.config import Settings
from loom.db import identity as repo
from loom.db.async_database import AsyncDatabase
from loom.db.database import Database

# Far above any real token; refuses oversized input before any parsing.
MAX_CREDENTIAL_LENGTH = 8192


async def authenticate_request(
    request: Request, db: Database, adb: AsyncDatabase, settings: Settings
) -> Principal:
    credential = _credential(request)
    if credential.startswith(KEY_PREFIX):
        return await authenticate_api_key(adb, credential)
    user_id, workspace_id = await _verify_jwt(credential, db, settings)
    (member,) = await adb.read(workspace_id, (repo.ACTIVE_ROLE, (workspace_id, user_id)))
    if not member:
        raise Unauthorized(
            "You are not a member of this workspace.",
            solution="Sign in again (POST /v1/auth/login).",
        )
    role = Role.parse(str(member[0]["role"]))
    return Principal(kind="user", workspace_id=workspace_id, user_id=user_id, role=role)


def _credential(request: Request) -> str:
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    if authorization is not None and api_key is not None:
        raise Unauthorized(
            "Send one credential, not both Authorization and X-API-Key.",
            solution="Drop one of the two headers.",
        )
    if api_key is not None:
        credential = api_key.strip()
        if not credential.startswith(KEY_PREFIX):
            raise Unauthorized(
                "X-API-Key must hold a Loom API key (loom_...).",
                solution="Send the key as created by POST /v1/api-keys.",
            )
    elif authorization is not None:
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized(
                "The Authorization header must read 'Bearer <token>'.",
                solution="Send an access token or API key after 'Bearer '.",
            )
    else:
        raise Unauthorized(
            "This needs a bearer token or an API key.",
            solution="Sign in with POST /v1/auth/login and send 'Authorization: Bearer "
            "<access_token>', or send an API key in X-API-Key.",
        )
    if len(credential) > MAX_CREDENTIAL_LENGTH:
        raise tokens.invalid_token()
    return credential


async def _verify_jwt(token: str, db: Database, settings: Settings) -> tuple[UUID, UUID]:
    """(user id, workspace id) of a valid Loom or OIDC token; the issuer decides which
    check applies, and each check pins its own algorithms and keys."""
    if oidc.enabled(settings):
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise tokens.invalid_token() from None
        if oidc.is_oidc_token(unverified.get("iss"), settings):
            identity = await run_in_threadpool(oidc.verify, token, db, settings)
            return identity.user_id, identity.workspace_id
    claims = tokens.decode_access_token(token, settings)
    return claims.user_id, claims.workspace_id
