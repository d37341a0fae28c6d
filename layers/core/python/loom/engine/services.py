"""What the engine lends nodes (``loom.nodes.base.NodeServices``), scoped to a workspace:
credentials decrypted on demand, and the workspace's outbound allowlist."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from loom.db import Database
from loom.errors import InvalidInput
from loom.secrets.service import resolve
from loom.secrets.vault import Vault

ALLOWLIST_TTL_SECONDS = 30.0


class WorkspaceServices:
    def __init__(
        self, db: Database, workspace_id: UUID, vault: Vault | None, allowlist: Sequence[str]
    ):
        self._db = db
        self._workspace_id = workspace_id
        self._vault = vault
        self._allowlist = tuple(allowlist)

    async def credential(self, credential_id: str) -> Any:
        try:
            key = UUID(str(credential_id))
        except ValueError:
            raise InvalidInput(
                f"Credential id {credential_id!r} is not a UUID.",
                solution="Use the id that POST /v1/credentials returned.",
            ) from None
        return await asyncio.to_thread(
            resolve, self._db, self._workspace_id, key, vault=self._vault
        )

    @property
    def outbound_allowlist(self) -> Sequence[str]:
        return self._allowlist


class ServicesCache:
    """One ``WorkspaceServices`` per workspace, refreshed every 30 s so allowlist changes
    apply without a restart and without a query per node."""

    def __init__(self, db: Database, vault: Vault | None) -> None:
        self._db = db
        self._vault = vault
        self._cached: dict[UUID, tuple[float, WorkspaceServices]] = {}

    def for_workspace(self, workspace_id: UUID) -> WorkspaceServices:
        now = time.monotonic()
        hit = self._cached.get(workspace_id)
        if hit is not None and now - hit[0] < ALLOWLIST_TTL_SECONDS:
            return hit[1]
        services = WorkspaceServices(
            self._db, workspace_id, self._vault, self._allowlist(workspace_id)
        )
        self._cached[workspace_id] = (now, services)
        return services

    def _allowlist(self, workspace_id: UUID) -> list[str]:
        with self._db.tenant(workspace_id) as conn:
            row = conn.execute(
                "SELECT settings -> 'outbound_allowlist' AS hosts FROM workspaces"
            ).fetchone()
        hosts = row["hosts"] if row else None
        return [str(h) for h in hosts] if isinstance(hosts, list) else []
