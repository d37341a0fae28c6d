"""Tokens from an outside OIDC issuer (Cognito, Auth0, Entra ID, ...), when configured.

Enabled when ``LOOM_OIDC_ISSUER`` and ``LOOM_OIDC_JWKS_URL`` are both set. A bearer JWT
whose (unverified) ``iss`` is that issuer is then checked here instead of as a Loom token:

* **Signature**: RS256 or ES256 only, by the key of the token's ``kid`` in the issuer's
  JWKS. Keys are fetched with PyJWT's ``PyJWKClient`` and cached per process for
  ``JWKS_CACHE_SECONDS``; an unknown ``kid`` refetches the set at most every 30 s.
* **Claims**: ``iss`` must equal ``LOOM_OIDC_ISSUER``; ``exp``, ``iat`` and ``sub`` are
  required; ``aud`` must contain ``LOOM_OIDC_AUDIENCE`` when that is set (when it is not,
  only tokens without ``aud`` pass, e.g. Cognito access tokens).
* **User**: the ``email`` claim, which must be verified (``email_verified`` true), is matched
  case-insensitively to an existing Loom user. Nobody is created here: a person signs up
  (or is invited and accepts) first. ``sub`` is not used for the mapping.
* **Workspace**: the ``loom_workspace_id`` claim when present, else the user's oldest
  membership. Either way the membership and role are then checked on every request like
  those of Loom's own tokens, so the claim can only choose among the user's workspaces.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from uuid import UUID

import jwt

from loom.auth.principal import Unauthorized
from loom.config import Settings
from loom.db import identity as repo
from loom.db.database import Database
from loom.errors import LoomError

ALGORITHMS = ["RS256", "ES256"]
JWKS_CACHE_SECONDS = 300
JWKS_TIMEOUT_SECONDS = 5.0
WORKSPACE_CLAIM = "loom_workspace_id"
_LEEWAY_SECONDS = 30

_clients: dict[str, jwt.PyJWKClient] = {}
_clients_lock = threading.Lock()


class IdentityProviderUnavailable(LoomError):
    code = "identity_provider_unavailable"
    status = 503


@dataclass(frozen=True)
class OidcIdentity:
    user_id: UUID
    workspace_id: UUID


def enabled(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_jwks_url)


def is_oidc_token(unverified_issuer: object, settings: Settings) -> bool:
    return enabled(settings) and unverified_issuer == settings.oidc_issuer


def verify(token: str, db: Database, settings: Settings) -> OidcIdentity:
    """The Loom user and workspace of a valid OIDC token; ``Unauthorized`` otherwise."""
    assert settings.oidc_jwks_url is not None
    try:
        signing_key = _jwks_client(settings.oidc_jwks_url).get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError:
        raise IdentityProviderUnavailable(
            "The identity provider's signing keys could not be fetched.",
            solution="Retry shortly; if it persists, check LOOM_OIDC_JWKS_URL.",
        ) from None
    except jwt.PyJWTError:
        raise _invalid() from None
    try:
        claims = jwt.decode(
            token,
            signing_key,
            algorithms=ALGORITHMS,
            audience=settings.oidc_audience,
            issuer=settings.oidc_issuer,
            leeway=_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized(
            "The identity token has expired.", solution="Get a new one from your identity provider."
        ) from None
    except jwt.PyJWTError:
        raise _invalid() from None
    email = claims.get("email")
    if not isinstance(email, str) or claims.get("email_verified") not in (True, "true"):
        raise Unauthorized(
            "The identity token has no verified email.",
            solution="Verify your email with the identity provider.",
        )
    return _map(db, email, claims.get(WORKSPACE_CLAIM))


def _map(db: Database, email: str, workspace_claim: object) -> OidcIdentity:
    with db.system() as conn:
        user = repo.find_user_by_email(conn, email)
        if user is None or user["disabled"]:
            raise Unauthorized(
                "No Loom account matches this identity.",
                solution="Sign up with the same email, or ask a workspace admin to invite it.",
            )
        if workspace_claim is not None:
            try:
                return OidcIdentity(user["id"], UUID(str(workspace_claim)))
            except ValueError:
                raise _invalid() from None
        memberships = repo.locate_memberships(conn, user["id"])
    if not memberships:
        raise Unauthorized(
            "This account is not a member of any workspace.",
            solution="Ask a workspace admin for an invitation.",
        )
    return OidcIdentity(user["id"], memberships[0][0])


def _jwks_client(url: str) -> jwt.PyJWKClient:
    """One client per JWKS URL per process, so its key cache outlives a request."""
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = jwt.PyJWKClient(
                url, cache_keys=True, lifespan=JWKS_CACHE_SECONDS, timeout=JWKS_TIMEOUT_SECONDS
            )
            _clients[url] = client
        return client


def _invalid() -> Unauthorized:
    return Unauthorized(
        "The identity token is invalid.", solution="Sign in again with your identity provider."
    )
