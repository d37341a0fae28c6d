"""Saving, versioning and reading workflows.

Every save validates the whole definition and appends an immutable version; a live pointer
says which version new runs use. Reading a version (cached: a version never changes) is
``loom.workflows.versions``, which the engine imports instead of this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from loom.db import workflows as repo
from loom.db.database import Conn, Database
from loom.errors import NotFound
from loom.triggers.deploy import rebind_if_deployed, unbind
from loom.workflows.diff import DefinitionDiff, diff_definitions
from loom.workflows.validation import validate_definition
from loom.workflows.versions import checksum as checksum  # also imported from here
from loom.workflows.versions import load_definition, require_workflow


@dataclass(frozen=True)
class SavedVersion:
    workflow_id: UUID
    version: int
    created: bool


def create_workflow(
    db: Database, workspace_id: UUID, raw: Any, *, created_by: UUID | None = None
) -> SavedVersion:
    definition = validate_definition(raw).to_json()
    with db.tenant(workspace_id) as conn:
        workflow_id = _insert(conn, workspace_id, definition, created_by)
        version = _append(conn, workspace_id, workflow_id, definition, created_by, publish=True)
    return SavedVersion(workflow_id, version, created=True)


def save_version(
    db: Database,
    workspace_id: UUID,
    workflow_id: UUID,
    raw: Any,
    *,
    created_by: UUID | None = None,
    publish: bool = True,
) -> SavedVersion:
    definition = validate_definition(raw).to_json()
    with db.tenant(workspace_id) as conn:
        require_workflow(conn, workflow_id, lock=True)
        version = _append(conn, workspace_id, workflow_id, definition, created_by, publish=publish)
    return SavedVersion(workflow_id, version, created=False)


def save_by_name(db: Database, workspace_id: UUID, raw: Any) -> SavedVersion:
    """The CLI's save: reuse the latest version of the workflow with this name when the
    definition is unchanged; otherwise add a version (or create the workflow)."""
    definition = validate_definition(raw).to_json()
    with db.tenant(workspace_id) as conn:
        existing = repo.find_workflow_by_name(conn, definition["name"])
        if existing is None:
            workflow_id = _insert(conn, workspace_id, definition, None)
            version = _append(conn, workspace_id, workflow_id, definition, None, publish=True)
            return SavedVersion(workflow_id, version, created=True)
        latest = repo.get_version(conn, existing["id"], existing["latest_version"])
        if latest is not None and latest["checksum"] == checksum(definition):
            if existing["live_version"] != latest["version"]:
                repo.set_live_version(conn, existing["id"], latest["version"])
                rebind_if_deployed(conn, workspace_id, existing["id"])
            return SavedVersion(existing["id"], latest["version"], created=False)
        require_workflow(conn, existing["id"], lock=True)
        version = _append(conn, workspace_id, existing["id"], definition, None, publish=True)
        return SavedVersion(existing["id"], version, created=False)


def _insert(
    conn: Conn, workspace_id: UUID, definition: dict[str, Any], created_by: UUID | None
) -> UUID:
    row = repo.insert_workflow(
        conn,
        workspace_id=workspace_id,
        name=definition["name"],
        description=definition.get("description", ""),
        created_by=created_by,
    )
    return UUID(str(row["id"]))


def _append(
    conn: Conn,
    workspace_id: UUID,
    workflow_id: UUID,
    definition: dict[str, Any],
    created_by: UUID | None,
    *,
    publish: bool,
) -> int:
    """Add a version of an already-validated definition (the workflow row locked); a
    published one is redeployed if the workflow is deployed."""
    version = repo.add_version(
        conn,
        workspace_id=workspace_id,
        workflow_id=workflow_id,
        definition=definition,
        checksum=checksum(definition),
        created_by=created_by,
        publish=publish,
    )
    if publish:
        rebind_if_deployed(conn, workspace_id, workflow_id)
    return version


def publish(db: Database, workspace_id: UUID, workflow_id: UUID, version: int) -> None:
    with db.tenant(workspace_id) as conn:
        require_workflow(conn, workflow_id, lock=True)
        if repo.get_version(conn, workflow_id, version) is None:
            raise NotFound(
                f"Workflow {workflow_id} has no version {version}.",
                solution="List the versions with GET /v1/workflows/{id}/versions.",
            )
        repo.set_live_version(conn, workflow_id, version)
        rebind_if_deployed(conn, workspace_id, workflow_id)


def diff_versions(
    db: Database, workspace_id: UUID, workflow_id: UUID, before: int, after: int
) -> DefinitionDiff:
    """What changed between two versions of a workflow, node by node and edge by edge."""
    with db.tenant(workspace_id) as conn:
        require_workflow(conn, workflow_id)
        old = load_definition(conn, workflow_id, before)
        new = load_definition(conn, workflow_id, after)
    return diff_definitions(old, new)


def get_workflow(db: Database, workspace_id: UUID, workflow_id: UUID) -> dict[str, Any]:
    """The workflow row with its live definition."""
    with db.tenant(workspace_id) as conn:
        row = require_workflow(conn, workflow_id)
        version = row["live_version"] or row["latest_version"]
        definition = load_definition(conn, workflow_id, version).to_json()
    return {**row, "definition": definition}


def list_workflows(
    db: Database, workspace_id: UUID, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        return repo.list_workflows(conn, limit, offset)


def delete_workflow(db: Database, workspace_id: UUID, workflow_id: UUID) -> None:
    """Hide the workflow, undeployed; its versions and runs stay, as history."""
    with db.tenant(workspace_id) as conn:
        require_workflow(conn, workflow_id, lock=True)
        unbind(conn, workflow_id)
        if not repo.soft_delete(conn, workflow_id):
            raise NotFound(f"Workflow {workflow_id} not found.", solution="Check the workflow id.")


def list_versions(db: Database, workspace_id: UUID, workflow_id: UUID) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        require_workflow(conn, workflow_id)
        return repo.list_versions(conn, workflow_id)


def get_version(
    db: Database, workspace_id: UUID, workflow_id: UUID, version: int
) -> dict[str, Any]:
    with db.tenant(workspace_id) as conn:
        require_workflow(conn, workflow_id)
        row = repo.get_version(conn, workflow_id, version)
    if row is None:
        raise NotFound(
            f"Workflow {workflow_id} has no version {version}.",
            solution="List the versions with GET /v1/workflows/{id}/versions.",
        )
    return row
