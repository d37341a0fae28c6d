"""People and workspaces: sign-up, sign-in, sessions, members and invitations.

A session is one user in one workspace: an access token (``loom.auth.tokens``) and a
refresh token family (``loom.auth.refresh``). Signing in to another workspace starts
another session. Membership rules:

* only people (not API keys) manage workspaces, members and invitations;
* admins manage members and invitations, but only owners may change, remove or create
  owners;
* a workspace always keeps one owner: its last owner can be neither demoted nor removed;
* any member may leave (remove themselves), the last owner excepted.

Membership changes lock the workspace row, so two concurrent changes cannot both pass
the last-owner check. Invitations carry a random token, shown once to the inviter (Loom
sends no email yet), stored as a SHA-256 hash, valid for seven days, and accepted only by
the invited address.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from loom.auth import passwords, refresh, tokens
from loom.auth.principal import Forbidden, Principal, Role, Unauthorized
from loom.config import Settings
from loom.db import identity as repo
from loom.db.database import Conn, Database
from loom.errors import Conflict, InvalidInput, LoomError, NotFound

INVITATION_TTL_SECONDS = 7 * 86_400
MAX_EMAIL_LENGTH = 320
# Deliberately loose: the address is proven by the mail that reaches it, not by a regex.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class EmailTaken(Conflict):
    code = "email_taken"
    retryable = False


class LastOwner(Conflict):
    code = "last_owner"
    retryable = False


class AlreadyMember(Conflict):
    code = "already_member"
    retryable = False


class NoWorkspace(LoomError):
    code = "no_workspace"
    status = 403
    retryable = False


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    user_id: UUID
    workspace_id: UUID
    expires_in: int


def normalize_email(value: str) -> str:
    """Trimmed and lower-cased; ``ValueError`` when it is not an address."""
    email = value.strip().lower()
    well_formed = email.isprintable() and _EMAIL.fullmatch(email) is not None
    if len(email) > MAX_EMAIL_LENGTH or not well_formed:
        raise ValueError("not an email address")
    return email


def require_user(principal: Principal, role: Role) -> UUID:
    """The user id of a person holding at least ``role``; API keys are refused."""
    if principal.kind != "user" or principal.user_id is None:
        raise Forbidden(
            "API keys can't do this; only people can.",
            solution="Use a person's access token (POST /v1/auth/login).",
        )
    if principal.role is None or principal.role < role:
        raise _needs(role)
    return principal.user_id


# Sessions ---------------------------------------------------------------------------


def signup(
    db: Database, settings: Settings, *, email: str, password: str, workspace_name: str
) -> TokenPair:
    """A new user who owns a new workspace, signed in to it."""
    email = _checked_email(email)
    password_hash = passwords.hash_password(password)
    workspace_id = uuid.uuid4()
    try:
        with db.tenant(workspace_id) as conn:
            user = repo.insert_user(conn, email=email, password_hash=password_hash)
            repo.insert_workspace(conn, workspace_id=workspace_id, name=workspace_name)
            repo.insert_membership(
                conn, workspace_id=workspace_id, user_id=user["id"], role=Role.OWNER.label
            )
            refresh_token = _start_session(conn, settings, user["id"], workspace_id)
    except psycopg.errors.UniqueViolation:
        raise EmailTaken(
            "An account with this email already exists.",
            solution="Sign in with POST /v1/auth/login instead.",
        ) from None
    return _pair(settings, user["id"], workspace_id, refresh_token)


def login(
    db: Database,
    settings: Settings,
    *,
    email: str,
    password: str,
    workspace_id: UUID | None = None,
) -> TokenPair:
    """Check the password and sign in to ``workspace_id``, or to the oldest membership."""
    with db.system() as conn:
        user = repo.find_user_by_email(conn, email.strip())
    if user is None or user["password_hash"] is None:
        passwords.verify_unknown(password)
        raise _bad_login()
    if not passwords.verify_password(user["password_hash"], password) or user["disabled"]:
        raise _bad_login()
    user_id: UUID = user["id"]
    if workspace_id is None:
        with db.system() as conn:
            memberships = repo.locate_memberships(conn, user_id)
        if not memberships:
            raise NoWorkspace(
                "You are not a member of any workspace.",
                solution="Ask a workspace admin for an invitation.",
            )
        workspace_id = memberships[0][0]
    with db.tenant(workspace_id) as conn:
        if repo.get_active_role(conn, workspace_id=workspace_id, user_id=user_id) is None:
            raise _no_such_workspace()
        if passwords.needs_rehash(user["password_hash"]):
            repo.set_password_hash(conn, user_id, passwords.hash_password(password))
        refresh_token = _start_session(conn, settings, user_id, workspace_id)
    return _pair(settings, user_id, workspace_id, refresh_token)


def refresh_session(db: Database, settings: Settings, refresh_token: str) -> TokenPair:
    """Rotate the refresh token; the session ends if the user left the workspace."""
    rotated = refresh.rotate(db, refresh_token, ttl_seconds=settings.refresh_token_ttl_seconds)
    with db.tenant(rotated.workspace_id) as conn:
        role = repo.get_active_role(
            conn, workspace_id=rotated.workspace_id, user_id=rotated.user_id
        )
    if role is None:
        refresh.revoke_family(db, rotated.family_id)
        raise refresh.refused()
    return _pair(settings, rotated.user_id, rotated.workspace_id, rotated.refresh_token)


def logout(db: Database, refresh_token: str) -> None:
    refresh.revoke_family_of(db, refresh_token)


def describe_principal(db: Database, principal: Principal) -> dict[str, Any]:
    """Who is calling, for ``GET /v1/auth/me``."""
    email = None
    if principal.user_id is not None:
        with db.system() as conn:
            user = repo.get_user(conn, principal.user_id)
        email = None if user is None else user["email"]
    return {
        "kind": principal.kind,
        "workspace_id": principal.workspace_id,
        "user_id": principal.user_id,
        "email": email,
        "role": None if principal.role is None else principal.role.label,
        "key_id": principal.key_id,
        "scopes": sorted(principal.scopes),
    }


# Workspaces -------------------------------------------------------------------------


def create_workspace(
    db: Database, settings: Settings, principal: Principal, *, name: str
) -> tuple[dict[str, Any], TokenPair]:
    """A new workspace owned by the caller, and a session in it."""
    user_id = require_user(principal, Role.VIEWER)
    workspace_id = uuid.uuid4()
    with db.tenant(workspace_id) as conn:
        workspace = repo.insert_workspace(conn, workspace_id=workspace_id, name=name)
        repo.insert_membership(
            conn, workspace_id=workspace_id, user_id=user_id, role=Role.OWNER.label
        )
        refresh_token = _start_session(conn, settings, user_id, workspace_id)
    workspace["role"] = Role.OWNER.label
    return workspace, _pair(settings, user_id, workspace_id, refresh_token)


def list_workspaces(db: Database, principal: Principal) -> list[dict[str, Any]]:
    """The caller's workspaces, oldest membership first, each read in its own tenant."""
    user_id = require_user(principal, Role.VIEWER)
    with db.system() as conn:
        memberships = repo.locate_memberships(conn, user_id)
    found = []
    for workspace_id, role in memberships:
        with db.tenant(workspace_id) as conn:
            workspace = repo.get_workspace(conn, workspace_id)
        if workspace is not None:
            found.append({**workspace, "role": role})
    return found


def current_workspace(db: Database, principal: Principal) -> dict[str, Any]:
    with db.tenant(principal.workspace_id) as conn:
        workspace = repo.get_workspace(conn, principal.workspace_id)
    if workspace is None:
        raise _no_such_workspace()
    return {**workspace, "role": None if principal.role is None else principal.role.label}


# Members ----------------------------------------------------------------------------


def list_members(db: Database, principal: Principal) -> list[dict[str, Any]]:
    require_user(principal, Role.VIEWER)
    with db.tenant(principal.workspace_id) as conn:
        return repo.list_members(conn, principal.workspace_id)


def change_member_role(
    db: Database, principal: Principal, user_id: UUID, role: Role
) -> dict[str, Any]:
    actor_id = require_user(principal, Role.ADMIN)
    workspace_id = principal.workspace_id
    with db.tenant(workspace_id) as conn:
        actor_role, target_role = _lock_for_change(conn, workspace_id, actor_id, user_id)
        if actor_role < Role.ADMIN:
            raise _needs(Role.ADMIN)
        if actor_role < Role.OWNER and Role.OWNER in (target_role, role):
            raise _only_owners()
        if target_role == Role.OWNER and role != Role.OWNER:
            _keep_an_owner(conn, workspace_id, "demoted")
        repo.update_member_role(conn, workspace_id=workspace_id, user_id=user_id, role=role.label)
        member = repo.get_member(conn, workspace_id=workspace_id, user_id=user_id)
    assert member is not None
    return member


def remove_member(db: Database, principal: Principal, user_id: UUID) -> None:
    """Admins remove members; anyone may remove themselves (leave)."""
    actor_id = require_user(principal, Role.VIEWER)
    workspace_id = principal.workspace_id
    with db.tenant(workspace_id) as conn:
        actor_role, target_role = _lock_for_change(conn, workspace_id, actor_id, user_id)
        if user_id != actor_id:
            if actor_role < Role.ADMIN:
                raise _needs(Role.ADMIN)
            if actor_role < Role.OWNER and target_role == Role.OWNER:
                raise _only_owners()
        if target_role == Role.OWNER:
            _keep_an_owner(conn, workspace_id, "removed")
        repo.delete_member(conn, workspace_id=workspace_id, user_id=user_id)
        repo.revoke_sessions(conn, user_id=user_id, workspace_id=workspace_id)


def _lock_for_change(
    conn: Conn, workspace_id: UUID, actor_id: UUID, user_id: UUID
) -> tuple[Role, Role]:
    """Lock the workspace (membership changes go one at a time), then read both roles
    afresh: the caller's may have changed since its request was authenticated."""
    repo.get_workspace(conn, workspace_id, lock=True)
    actor = repo.get_active_role(conn, workspace_id=workspace_id, user_id=actor_id)
    if actor is None:
        raise Unauthorized(
            "You are no longer a member of this workspace.", solution="Sign in again."
        )
    target = repo.get_member(conn, workspace_id=workspace_id, user_id=user_id)
    if target is None:
        raise NotFound(
            "No member with this id in this workspace.",
            solution="List members with GET /v1/workspaces/current/members.",
        )
    return Role.parse(actor), Role.parse(target["role"])


def _keep_an_owner(conn: Conn, workspace_id: UUID, change: str) -> None:
    if repo.count_owners(conn, workspace_id) <= 1:
        raise LastOwner(
            f"The last owner of a workspace can't be {change}.",
            solution="Make another member an owner first.",
        )


# Invitations ------------------------------------------------------------------------


def invite(
    db: Database, principal: Principal, *, email: str, role: Role
) -> tuple[dict[str, Any], str]:
    """A pending invitation and its token, which is never shown again."""
    actor_id = require_user(principal, Role.ADMIN)
    if role == Role.OWNER:
        raise _only_owners()
    email = _checked_email(email)
    token = secrets.token_urlsafe(32)
    workspace_id = principal.workspace_id
    with db.tenant(workspace_id) as conn:
        if repo.is_member_email(conn, workspace_id=workspace_id, email=email):
            raise AlreadyMember(
                f"{email} is already a member of this workspace.",
                solution="Change their role instead.",
            )
        invitation = repo.upsert_invitation(
            conn,
            workspace_id=workspace_id,
            email=email,
            role=role.label,
            token_hash=_hash(token),
            invited_by=actor_id,
            ttl_seconds=INVITATION_TTL_SECONDS,
        )
    return invitation, token


def list_invitations(db: Database, principal: Principal) -> list[dict[str, Any]]:
    require_user(principal, Role.ADMIN)
    with db.tenant(principal.workspace_id) as conn:
        return repo.list_pending_invitations(conn, principal.workspace_id)


def revoke_invitation(db: Database, principal: Principal, invitation_id: UUID) -> None:
    require_user(principal, Role.ADMIN)
    with db.tenant(principal.workspace_id) as conn:
        deleted = repo.delete_pending_invitation(conn, invitation_id)
    if not deleted:
        raise NotFound(
            "No pending invitation with this id.",
            solution="List them with GET /v1/workspaces/current/invitations.",
        )


def accept_invitation(
    db: Database, settings: Settings, principal: Principal, token: str
) -> TokenPair:
    """Join the inviting workspace as the caller, and start a session there."""
    user_id = require_user(principal, Role.VIEWER)
    with db.system() as conn:
        located = repo.locate_invitation(conn, _hash(token))
        user = repo.get_user(conn, user_id)
    if located is None or user is None:
        raise _invitation_invalid()
    workspace_id, invitation_id = located
    try:
        with db.tenant(workspace_id) as conn:
            invitation = repo.lock_invitation(conn, invitation_id)
            if invitation is None or invitation["accepted_at"] or invitation["expired"]:
                raise _invitation_invalid()
            if invitation["email"].lower() != user["email"].lower():
                raise Forbidden(
                    "This invitation was sent to another email address.",
                    solution="Sign in as the invited address, then accept it.",
                )
            repo.insert_membership(
                conn, workspace_id=workspace_id, user_id=user_id, role=invitation["role"]
            )
            repo.accept_invitation(conn, invitation_id)
            refresh_token = _start_session(conn, settings, user_id, workspace_id)
    except psycopg.errors.UniqueViolation:
        raise AlreadyMember(
            "You are already a member of this workspace.",
            solution="Sign in to it with POST /v1/auth/login and its workspace_id.",
        ) from None
    return _pair(settings, user_id, workspace_id, refresh_token)


# Helpers ----------------------------------------------------------------------------


def _start_session(conn: Conn, settings: Settings, user_id: UUID, workspace_id: UUID) -> str:
    return refresh.start_family(
        conn,
        user_id=user_id,
        workspace_id=workspace_id,
        ttl_seconds=settings.refresh_token_ttl_seconds,
    )


def _pair(settings: Settings, user_id: UUID, workspace_id: UUID, refresh_token: str) -> TokenPair:
    access = tokens.issue_access_token(settings, user_id=user_id, workspace_id=workspace_id)
    return TokenPair(
        access_token=access,
        refresh_token=refresh_token,
        user_id=user_id,
        workspace_id=workspace_id,
        expires_in=settings.access_token_ttl_seconds,
    )


def _checked_email(value: str) -> str:
    try:
        return normalize_email(value)
    except ValueError:
        raise InvalidInput(
            f"{value!r} is not an email address.", solution="Give an address like ada@example.com."
        ) from None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _bad_login() -> Unauthorized:
    return Unauthorized(
        "The email or password is incorrect.",
        solution="Check both and try again, or sign up with POST /v1/auth/signup.",
    )


def _no_such_workspace() -> NotFound:
    return NotFound(
        "No workspace with this id among yours.",
        solution="List your workspaces with GET /v1/workspaces.",
    )


def _needs(role: Role) -> Forbidden:
    return Forbidden(
        f"This needs the {role.label} role in this workspace.",
        solution="Ask a workspace owner or admin to change your role.",
    )


def _only_owners() -> Forbidden:
    return Forbidden(
        "Only owners can change, remove or appoint owners.",
        solution="Ask an owner of this workspace.",
    )


def _invitation_invalid() -> NotFound:
    return NotFound(
        "This invitation is invalid, expired or already used.",
        solution="Ask the workspace admin for a new invitation.",
    )
