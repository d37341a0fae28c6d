"""The caller of a request, as every route sees it.

A principal acts in exactly one workspace, which comes from its credential (the token's
workspace claim, or the API key's workspace), never from a request header. Users are held
to a role; API keys to scopes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal
from uuid import UUID

from loom.errors import LoomError


class Role(IntEnum):
    """Membership roles, ordered: a role may do everything the ones below it may."""

    VIEWER = 10
    EDITOR = 20
    ADMIN = 30
    OWNER = 40

    @classmethod
    def parse(cls, value: str) -> Role:
        return cls[value.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


# Scopes an API key may hold. Users are not scoped; their role decides.
SCOPES = frozenset(
    {
        "workflows:read",
        "workflows:write",
        "runs:read",
        "runs:write",
        "hil:respond",
        "credentials:read",
        "credentials:write",
        "agents:read",
        "agents:write",
    }
)


class Forbidden(LoomError):
    code = "forbidden"
    status = 403
    retryable = False


class Unauthorized(LoomError):
    code = "unauthorized"
    status = 401
    retryable = False


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "api_key"]
    workspace_id: UUID
    user_id: UUID | None = None
    role: Role | None = None
    key_id: UUID | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    def require(self, *, role: Role, scope: str) -> None:
        """Users need at least ``role``; API keys need ``scope``."""
        if self.kind == "user":
            if self.role is None or self.role < role:
                raise Forbidden(
                    f"This needs the {role.label} role in this workspace.",
                    solution="Ask a workspace owner or admin to change your role.",
                )
        elif scope not in self.scopes:
            raise Forbidden(
                f"This API key lacks the scope {scope}.",
                solution=f"Create a key with the {scope} scope.",
            )
