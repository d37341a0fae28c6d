"""Reading saved workflow versions: the live version, and a version's definition (cached
by workflow and version, since a version never changes).

Everything that runs workflows needs this, and only this, of ``loom.workflows``: it
imports neither validation nor the trigger deployment that saving goes through
(``loom.workflows.service``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from uuid import UUID

from loom.db import workflows as repo
from loom.db.async_database import AsyncConn
from loom.db.database import Conn
from loom.errors import InvalidInput, NotFound
from loom.workflows.definition import WorkflowDefinition

_CACHE: dict[tuple[UUID, int], WorkflowDefinition] = {}
_CACHE_LIMIT = 512


def checksum(definition: dict[str, Any]) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def require_workflow(conn: Conn, workflow_id: UUID, *, lock: bool = False) -> dict[str, Any]:
    row = repo.get_workflow(conn, workflow_id, lock=lock)
    if row is None:
        raise _workflow_not_found(workflow_id)
    return row


def _workflow_not_found(workflow_id: UUID) -> NotFound:
    return NotFound(f"Workflow {workflow_id} not found.", solution="Check the workflow id.")


def live_version(conn: Conn, workflow_id: UUID) -> int:
    return _live(workflow_id, repo.get_workflow(conn, workflow_id))


async def read_live_version(conn: AsyncConn, workflow_id: UUID) -> int:
    """``live_version``, awaited (the API)."""
    return _live(workflow_id, await repo.read_workflow(conn, workflow_id))


def _live(workflow_id: UUID, row: dict[str, Any] | None) -> int:
    if row is None:
        raise _workflow_not_found(workflow_id)
    if row["live_version"] is None:
        raise InvalidInput(
            f"Workflow {workflow_id} has no published version.", solution="Publish a version first."
        )
    return int(row["live_version"])


def load_definition(conn: Conn, workflow_id: UUID, version: int) -> WorkflowDefinition:
    cached = _CACHE.get((workflow_id, version))
    if cached is not None:
        return cached
    return _parsed(workflow_id, version, repo.get_version(conn, workflow_id, version))


async def read_definition(conn: AsyncConn, workflow_id: UUID, version: int) -> WorkflowDefinition:
    """``load_definition``, awaited (the API)."""
    cached = _CACHE.get((workflow_id, version))
    if cached is not None:
        return cached
    return _parsed(workflow_id, version, await repo.read_version(conn, workflow_id, version))


def _parsed(workflow_id: UUID, version: int, row: dict[str, Any] | None) -> WorkflowDefinition:
    if row is None:
        raise NotFound(
            f"Workflow {workflow_id} version {version} not found.",
            solution="Check the workflow id and version.",
        )
    definition = WorkflowDefinition.model_validate(row["definition"])
    _remember(workflow_id, version, definition)
    return definition


def _remember(workflow_id: UUID, version: int, definition: WorkflowDefinition) -> None:
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[(workflow_id, version)] = definition
