"""Agents and their versions: every save an immutable version, a live pointer, and checks
that the spec names only what exists (models, workflows, agents, credentials)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from loom.agents.governance import Maturity
from loom.agents.spec import AgentSpec, DelegateTool, WorkflowAgentTool
from loom.config import get_settings
from loom.db import Database
from loom.db import agents as repo
from loom.db import credentials as credentials_repo
from loom.db import workflows as workflows_repo
from loom.db.database import Conn
from loom.errors import Conflict, NotFound, ValidationFailed
from loom.llm.errors import LlmModelUnknown
from loom.llm.targets import check_chat_model
from loom.workflows.service import checksum


@dataclass(frozen=True)
class Agent:
    """An agent at one version: what an execution needs."""

    id: UUID
    workspace_id: UUID
    name: str
    version: int
    maturity: Maturity
    spec: AgentSpec


def create_agent(
    db: Database,
    workspace_id: UUID,
    *,
    name: str,
    description: str,
    spec: AgentSpec,
    created_by: UUID | None,
) -> dict[str, Any]:
    stored = spec.model_dump(mode="json")
    with _unique_name(name), db.tenant(workspace_id) as conn:
        row = repo.insert_agent(conn, workspace_id=workspace_id, name=name, description=description)
        _check_references(conn, spec, row["id"])
        _append(conn, workspace_id, row["id"], name, description, stored, created_by, True)
        return _require(conn, row["id"])


def save_version(
    db: Database,
    workspace_id: UUID,
    agent_id: UUID,
    *,
    name: str,
    description: str,
    spec: AgentSpec,
    created_by: UUID | None,
    publish: bool,
) -> dict[str, Any]:
    stored = spec.model_dump(mode="json")
    with _unique_name(name), db.tenant(workspace_id) as conn:
        _require(conn, agent_id, lock=True)
        _check_references(conn, spec, agent_id)
        _append(conn, workspace_id, agent_id, name, description, stored, created_by, publish)
        return _require(conn, agent_id)


def publish(
    db: Database, workspace_id: UUID, agent_id: UUID, version: int, *, actor: str
) -> dict[str, Any]:
    with db.tenant(workspace_id) as conn:
        _require(conn, agent_id, lock=True)
        _version(conn, agent_id, version)
        repo.set_live_version(conn, agent_id, version)
        repo.audit(
            conn,
            workspace_id=workspace_id,
            agent_id=agent_id,
            agent_version=version,
            event="published",
            detail={"version": version},
            actor=actor,
        )
        return _require(conn, agent_id)


def get_agent(db: Database, workspace_id: UUID, agent_id: UUID) -> dict[str, Any]:
    """The agent row with its live spec."""
    with db.tenant(workspace_id) as conn:
        row = _require(conn, agent_id)
        version = _version(conn, agent_id, row["live_version"] or row["latest_version"])
    return {**row, "spec": version["spec"]}


def load(db: Database, workspace_id: UUID, agent_id: UUID, version: int | None = None) -> Agent:
    """The agent at ``version`` (default: live), ready to execute."""
    with db.tenant(workspace_id) as conn:
        return load_in(conn, workspace_id, agent_id, version)


def load_in(conn: Conn, workspace_id: UUID, agent_id: UUID, version: int | None = None) -> Agent:
    row = _require(conn, agent_id)
    number = version or row["live_version"] or row["latest_version"]
    stored = _version(conn, agent_id, number)
    return Agent(
        id=agent_id,
        workspace_id=workspace_id,
        name=row["name"],
        version=number,
        maturity=Maturity[row["maturity"]],
        spec=AgentSpec.model_validate(stored["spec"]),
    )


def list_agents(
    db: Database, workspace_id: UUID, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        return repo.list_agents(conn, limit, offset)


def list_versions(db: Database, workspace_id: UUID, agent_id: UUID) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        _require(conn, agent_id)
        return repo.list_versions(conn, agent_id)


def get_version(db: Database, workspace_id: UUID, agent_id: UUID, version: int) -> dict[str, Any]:
    with db.tenant(workspace_id) as conn:
        _require(conn, agent_id)
        return _version(conn, agent_id, version)


def delete_agent(db: Database, workspace_id: UUID, agent_id: UUID) -> None:
    """Hide the agent; its versions, episodes and audit log stay, as history."""
    with db.tenant(workspace_id) as conn:
        if not repo.soft_delete(conn, agent_id):
            raise _not_found(agent_id)


def audit_log(
    db: Database, workspace_id: UUID, agent_id: UUID, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        _require(conn, agent_id)
        return repo.list_audit(conn, agent_id, before=before, limit=limit)


def require(conn: Conn, agent_id: UUID, *, lock: bool = False) -> dict[str, Any]:
    return _require(conn, agent_id, lock=lock)


def _require(conn: Conn, agent_id: UUID, *, lock: bool = False) -> dict[str, Any]:
    row = repo.get_agent(conn, agent_id, lock=lock)
    if row is None:
        raise _not_found(agent_id)
    return row


@contextmanager
def _unique_name(name: str) -> Iterator[None]:
    try:
        yield
    except psycopg.errors.UniqueViolation:
        raise Conflict(
            f"An agent named {name!r} already exists in this workspace.",
            solution="Choose another name, or update that agent with PUT /v1/agents/{id}.",
        ) from None


def _not_found(agent_id: UUID) -> NotFound:
    return NotFound(f"Agent {agent_id} not found.", solution="Check the agent id.")


def _version(conn: Conn, agent_id: UUID, version: int) -> dict[str, Any]:
    row = repo.get_version(conn, agent_id, version)
    if row is None:
        raise NotFound(
            f"Agent {agent_id} has no version {version}.",
            solution="List the versions with GET /v1/agents/{id}/versions.",
        )
    return row


def _append(
    conn: Conn,
    workspace_id: UUID,
    agent_id: UUID,
    name: str,
    description: str,
    spec: dict[str, Any],
    created_by: UUID | None,
    publish: bool,
) -> int:
    return repo.add_version(
        conn,
        workspace_id=workspace_id,
        agent_id=agent_id,
        name=name,
        description=description,
        spec=spec,
        checksum=checksum(spec),
        created_by=created_by,
        publish=publish,
    )


def _check_references(conn: Conn, spec: AgentSpec, agent_id: UUID) -> None:
    """Every model, workflow, agent and credential the spec names must exist; all the
    problems are reported at once, and nothing is saved."""
    problems: list[dict[str, str]] = []
    local_file = get_settings().local_model_file
    for path, model in [("spec.model", spec.model)] + [
        (f"spec.fallbacks.{i}", m) for i, m in enumerate(spec.fallbacks)
    ]:
        try:
            check_chat_model(model, local_file)
        except LlmModelUnknown as exc:
            problems.append({"path": path, "message": f"{exc.message} {exc.solution}"})
    delegates = {i: t.agent_id for i, t in enumerate(spec.tools) if isinstance(t, DelegateTool)}
    known = repo.existing_agents(conn, list(delegates.values())) if delegates else set()
    for i, tool in enumerate(spec.tools):
        where = f"spec.tools.{i}"
        if isinstance(tool, DelegateTool) and tool.agent_id == agent_id:
            problems.append({"path": where, "message": "an agent cannot delegate to itself"})
        elif isinstance(tool, DelegateTool) and tool.agent_id not in known:
            problems.append(
                {"path": where, "message": f"agent {tool.agent_id} is not in this workspace"}
            )
        elif isinstance(tool, WorkflowAgentTool) and (
            workflows_repo.get_workflow(conn, tool.workflow_id) is None
        ):
            problems.append(
                {"path": where, "message": f"workflow {tool.workflow_id} is not in this workspace"}
            )
    if spec.credential_id is not None and _credential_missing(conn, spec.credential_id):
        problems.append(
            {
                "path": "spec.credential_id",
                "message": f"credential {spec.credential_id} is not in this workspace",
            }
        )
    if problems:
        raise ValidationFailed(
            f"The agent spec has {len(problems)} problem(s).",
            solution="Fix every entry listed in details and save again.",
            details=problems,
        )


def _credential_missing(conn: Conn, credential_id: str) -> bool:
    try:
        wanted = UUID(credential_id)
    except ValueError:
        return not any(r["name"] == credential_id for r in credentials_repo.list_credentials(conn))
    return credentials_repo.get_credential(conn, wanted) is None
