"""Loom's access tokens: short-lived HS256 JWTs naming a user and one workspace.

Claims: ``sub`` (user id), ``wid`` (workspace id), ``iss`` and ``aud`` from the settings,
``iat``, ``exp`` (``iat`` + the TTL), ``jti`` and ``typ`` = ``access``. Decoding pins the
algorithm to HS256 (so ``alg: none`` and public-key tricks are refused) and requires every
claim above. A token says who and where; the role is looked up on every request, so a
removed member loses access at once rather than when the token expires.

The key is ``LOOM_JWT_SECRET``, or locally a random 32-byte key kept in
``LOOM_HOME/jwt.key`` (mode 0600), created once and atomically, so processes that start
together agree on it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from uuid import UUID

import jwt

from loom.auth.principal import Unauthorized
from loom.config import Settings
from loom.errors import ConfigError

ALGORITHM = "HS256"
TOKEN_TYPE = "access"  # noqa: S105 - the typ claim, not a secret
KEY_FILE_NAME = "jwt.key"
# SHA-256's block of security: a shorter HMAC key is guessable offline from one token.
MIN_KEY_BYTES = 32
# Tolerated clock difference between the process that signs and the one that checks.
LEEWAY_SECONDS = 5
# Tokens whose signature was checked, kept by _verified: the live sessions of one process.
VERIFIED_TOKENS_CACHED = 4096
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "wid"]


@dataclass(frozen=True)
class AccessClaims:
    user_id: UUID
    workspace_id: UUID
    token_id: str
    expires_at: int


def issue_access_token(
    settings: Settings, *, user_id: UUID, workspace_id: UUID, now: float | None = None
) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": str(user_id),
        "wid": str(workspace_id),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": issued,
        "exp": issued + settings.access_token_ttl_seconds,
        "jti": secrets.token_urlsafe(16),
        "typ": TOKEN_TYPE,
    }
    return jwt.encode(claims, signing_key(settings), algorithm=ALGORITHM)


def decode_access_token(token: str, settings: Settings) -> AccessClaims:
    """The claims of a valid Loom access token; ``Unauthorized`` for anything else.

    A client sends the same token on every request for its whole life, so the signature
    and claim checks run once per token (``_verified``, per key, issuer and audience) and
    only the expiry is checked on every call."""
    claims = _verified(token, signing_key(settings), settings.jwt_issuer, settings.jwt_audience)
    if time.time() > claims.expires_at + LEEWAY_SECONDS:
        raise Unauthorized(
            "The access token has expired.",
            solution="Get a new one with POST /v1/auth/refresh, or sign in again.",
        )
    return claims


@lru_cache(maxsize=VERIFIED_TOKENS_CACHED)
def _verified(token: str, key: bytes, issuer: str, audience: str) -> AccessClaims:
    """Signature and claims of ``token``, its expiry aside. Only successes are cached: a
    refused token is checked again each time it is sent."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": _REQUIRED_CLAIMS, "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise invalid_token() from None
    if claims.get("typ") != TOKEN_TYPE:
        raise invalid_token()
    try:
        return AccessClaims(
            user_id=UUID(str(claims["sub"])),
            workspace_id=UUID(str(claims["wid"])),
            token_id=str(claims.get("jti", "")),
            expires_at=int(claims["exp"]),
        )
    except (TypeError, ValueError):
        raise invalid_token() from None


def invalid_token() -> Unauthorized:
    return Unauthorized(
        "The access token is invalid.",
        solution="Sign in again (POST /v1/auth/login) and send the new token.",
    )


def signing_key(settings: Settings) -> bytes:
    if settings.jwt_secret is not None:
        key = settings.jwt_secret.get_secret_value().encode()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"LOOM_JWT_SECRET is shorter than {MIN_KEY_BYTES} bytes.",
                solution="Use a long random value, e.g. `python -c 'import secrets; "
                "print(secrets.token_hex(32))'`.",
            )
        return key
    return _key_file(settings.home / KEY_FILE_NAME)


@lru_cache(maxsize=8)
def _key_file(path: Path) -> bytes:
    path = path.resolve()
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        _create_key(path)
        return _read_key(path)
    except OSError as exc:
        raise ConfigError(
            f"Cannot create the token signing key {path}: {exc.strerror}.",
            solution="Make LOOM_HOME writable, or set LOOM_JWT_SECRET.",
        ) from None


def _create_key(path: Path) -> None:
    """Write a fresh key to a private temporary file (mkstemp: mode 0600), then link it
    into place, so the key file appears whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_FILE_NAME}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(MIN_KEY_BYTES) + "\n")
            out.flush()
            os.fsync(out.fileno())
        # If another process linked its key first, that key stays and this one goes.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def _read_key(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"The token signing key {path} is readable by other users.",
            solution=f"Run `chmod 600 {path}`.",
        )
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"The token signing key {path} is damaged.",
            solution="Delete it (every session signs in again) or set LOOM_JWT_SECRET.",
        )
    return key
