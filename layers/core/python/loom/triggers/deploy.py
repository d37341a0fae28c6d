"""Deployment: binding the trigger nodes of a workflow's live version, and unbinding them.

Deploying makes one ``triggers`` row per CRON, WEBHOOK, GITHUB, SLACK and EMAIL node (keyed
by node id, so a trigger keeps its id, URL and secret across versions), a schedule per
CRON node, and deactivates the triggers of nodes the version no longer has. Both deploy
and undeploy are idempotent; publishing a new version of a deployed workflow binds again
(``rebind_if_deployed``, in the publishing transaction). TRIGGER.MANUAL is never bound.

Secrets: SLACK names the credential holding Slack's signing secret; WEBHOOK and GITHUB may
name one, or Loom generates one - issued (and shown, once) by ``issue_secret``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import ValidationError

from loom.db import credentials as credentials_repo
from loom.db import triggers as repo
from loom.db import workflows as workflows_repo
from loom.db.database import Conn, Database
from loom.errors import Conflict, InvalidInput, NotFound, ValidationFailed
from loom.nodes.registry import get_spec
from loom.secrets.types import CredentialType
from loom.secrets.vault import Binding, Vault
from loom.triggers import mirror
from loom.triggers.cron import next_fire
from loom.workflows.definition import Node, NodeType, WorkflowDefinition

Policy = Literal["allow", "skip", "queue"]

BOUND = frozenset({"CRON", "WEBHOOK", "GITHUB", "SLACK", "EMAIL"})
GENERATED = frozenset({"WEBHOOK", "GITHUB"})  # Loom makes a secret unless one is named
_SECRET_PARAMETERS = ("secret_credential", "signing_secret_credential")


@dataclass(frozen=True)
class Deployment:
    state: str
    version: int | None
    concurrency_policy: Policy
    lease_ttl_seconds: int
    deployed_at: datetime | None

    @classmethod
    def of(cls, workflow: dict[str, Any]) -> Deployment:
        return cls(
            state=workflow["deployment_state"],
            version=workflow["deployed_version"],
            concurrency_policy=workflow["concurrency_policy"],
            lease_ttl_seconds=workflow["lease_ttl_seconds"],
            deployed_at=workflow["deployed_at"],
        )


def deploy(
    db: Database,
    workspace_id: UUID,
    workflow_id: UUID,
    *,
    concurrency_policy: Policy | None = None,
    lease_ttl_seconds: int | None = None,
    now: datetime | None = None,
) -> Deployment:
    with db.tenant(workspace_id) as conn:
        workflow = _workflow(conn, workflow_id, lock=True)
        if workflow["live_version"] is None:
            raise InvalidInput(
                f"Workflow {workflow_id} has no published version to deploy.",
                solution="Publish a version first.",
            )
        _bind(conn, workspace_id, workflow, now or datetime.now(UTC))
        repo.set_deployment(
            conn,
            workflow_id,
            state="deployed",
            version=workflow["live_version"],
            concurrency_policy=concurrency_policy,
            lease_ttl_seconds=lease_ttl_seconds,
        )
        return Deployment.of(_workflow(conn, workflow_id))


@dataclass(frozen=True)
class Bound:
    deployment: Deployment
    triggers: list[dict[str, Any]]
    issued: dict[str, str]  # node id -> the secret issued by this call, shown this once


def deploy_and_issue(
    db: Database,
    vault: Vault,
    workspace_id: UUID,
    workflow_id: UUID,
    *,
    concurrency_policy: Policy | None = None,
    lease_ttl_seconds: int | None = None,
) -> Bound:
    """Deploy, then issue the generated secrets still pending, for the reply to show."""
    deployment = deploy(
        db,
        workspace_id,
        workflow_id,
        concurrency_policy=concurrency_policy,
        lease_ttl_seconds=lease_ttl_seconds,
    )
    issued = {}
    for node_id in _pending_secrets(db, workspace_id, workflow_id):
        secret = _issue(db, vault, workspace_id, workflow_id, node_id, rotate=False)
        if secret is not None:
            issued[node_id] = secret
    return Bound(deployment, list_triggers(db, workspace_id, workflow_id), issued)


def undeploy(db: Database, workspace_id: UUID, workflow_id: UUID) -> Deployment:
    with db.tenant(workspace_id) as conn:
        _workflow(conn, workflow_id, lock=True)
        unbind(conn, workflow_id)
        return Deployment.of(_workflow(conn, workflow_id))


def unbind(conn: Conn, workflow_id: UUID) -> None:
    """Deactivate every trigger and schedule of the workflow (rows, ids and secrets stay)."""
    repo.deactivate_triggers(conn, workflow_id)
    _mirror(conn, workflow_id)
    repo.set_deployment(conn, workflow_id, state="undeployed", version=None)


def _mirror(conn: Conn, workflow_id: UUID) -> None:
    """Outside schedules (EventBridge Scheduler on AWS) follow the rows just written."""
    if mirror.MIRROR is not None:
        mirror.MIRROR.sync(conn, workflow_id)


def rebind_if_deployed(conn: Conn, workspace_id: UUID, workflow_id: UUID) -> None:
    """After the live version changed: a deployed workflow follows it."""
    workflow = _workflow(conn, workflow_id)
    if workflow["deployment_state"] != "deployed" or workflow["live_version"] is None:
        return
    if workflow["live_version"] == workflow["deployed_version"]:
        return
    try:
        _bind(conn, workspace_id, workflow, datetime.now(UTC))
    except ValidationFailed as exc:
        raise ValidationFailed(
            f"Publishing would redeploy this workflow, and {exc.message[0].lower()}"
            f"{exc.message[1:]}",
            solution=exc.solution,
            details=exc.details,
        ) from None
    repo.set_deployment(conn, workflow_id, state="deployed", version=workflow["live_version"])


def list_triggers(db: Database, workspace_id: UUID, workflow_id: UUID) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        _workflow(conn, workflow_id)
        return repo.triggers_of(conn, workflow_id)


def issue_secret(
    db: Database, vault: Vault, workspace_id: UUID, workflow_id: UUID, node_id: str
) -> str:
    """A new generated secret for a WEBHOOK or GITHUB trigger, replacing any earlier one
    at once. It is returned here and never again (only its ciphertext is stored)."""
    secret = _issue(db, vault, workspace_id, workflow_id, node_id, rotate=True)
    assert secret is not None  # rotating always issues
    return secret


def _issue(
    db: Database,
    vault: Vault,
    workspace_id: UUID,
    workflow_id: UUID,
    node_id: str,
    *,
    rotate: bool,
) -> str | None:
    """Issue a secret; without ``rotate``, only if the trigger has none (so of two deploys
    at once, one issues it and the other shows none)."""
    with db.tenant(workspace_id) as conn:
        _workflow(conn, workflow_id)
        row = repo.trigger_by_node(conn, workflow_id, node_id, lock=True)
        if row is None:
            raise NotFound(
                f"Workflow {workflow_id} has no bound trigger '{node_id}'.",
                solution="Deploy the workflow; GET /v1/workflows/{id}/triggers lists them.",
            )
        if row["subtype"] not in GENERATED:
            raise InvalidInput(
                f"A TRIGGER.{row['subtype']} has no secret for Loom to issue.",
                solution="Only WEBHOOK and GITHUB triggers can have generated secrets.",
            )
        if row["secret_credential_id"] is not None and not row["secret_generated"]:
            raise Conflict(
                f"Trigger '{node_id}' verifies with your credential {row['secret_credential_id']}.",
                solution="Remove secret_credential from the node to let Loom generate one.",
            )
        if row["secret_credential_id"] is not None and not rotate:
            return None
        secret = secrets.token_hex(32)
        _replace_secret(conn, vault, workspace_id, row, secret)
    return secret


def _pending_secrets(db: Database, workspace_id: UUID, workflow_id: UUID) -> list[str]:
    """Node ids of active triggers still waiting for a generated secret."""
    with db.tenant(workspace_id) as conn:
        rows = repo.triggers_of(conn, workflow_id)
    return [
        r["node_id"]
        for r in rows
        if r["active"] and r["subtype"] in GENERATED and r["secret_credential_id"] is None
    ]


# -- binding ------------------------------------------------------------------------------


def _bind(conn: Conn, workspace_id: UUID, workflow: dict[str, Any], now: datetime) -> None:
    workflow_id, version = workflow["id"], workflow["live_version"]
    row = workflows_repo.get_version(conn, workflow_id, version)
    assert row is not None  # the live pointer names an existing version
    definition = WorkflowDefinition.model_validate(row["definition"])
    bound = [
        (index, node)
        for index, node in enumerate(definition.nodes)
        if node.type is NodeType.TRIGGER and node.subtype in BOUND
    ]
    parsed: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    for index, node in bound:
        params = _parameters(conn, index, node, problems)
        if params is not None:
            parsed[node.id] = params
    if problems:
        raise ValidationFailed(
            f"The triggers of version {version} cannot be deployed "
            f"({len(problems)} problem{'' if len(problems) == 1 else 's'}).",
            solution="Fix each problem in `details`, save a new version, and deploy again.",
            details=problems,
        )
    for _, node in bound:
        _bind_node(conn, workspace_id, workflow_id, node, parsed[node.id], now)
    repo.deactivate_triggers(conn, workflow_id, keep=[node.id for _, node in bound])
    _mirror(conn, workflow_id)


def _parameters(conn: Conn, index: int, node: Node, problems: list[dict[str, str]]) -> Any:
    """The node's parameters as its model, with any named secret credential checked."""
    spec = get_spec(node.type, node.subtype)
    assert spec is not None  # saved definitions name registered types
    path = f"nodes[{index}].parameters"
    try:
        params = spec.parameters.model_validate(node.parameters)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append({"path": f"{path}.{where}" if where else path, "message": message})
        return None
    for name in _SECRET_PARAMETERS:
        credential_id = getattr(params, name, None)
        if credential_id is None:
            continue
        found = credentials_repo.get_credential(conn, credential_id)
        if found is None or found["type"] != CredentialType.WEBHOOK_SECRET.value:
            message = f"credential {credential_id} is not a webhook_secret in this workspace"
            problems.append({"path": f"{path}.{name}", "message": message})
            return None
    return params


def _bind_node(
    conn: Conn, workspace_id: UUID, workflow_id: UUID, node: Node, params: Any, now: datetime
) -> None:
    config = params.model_dump(mode="json")
    row = repo.upsert_trigger(
        conn,
        workspace_id=workspace_id,
        workflow_id=workflow_id,
        node_id=node.id,
        subtype=node.subtype,
        config=config,
    )
    named = next((getattr(params, n) for n in _SECRET_PARAMETERS if hasattr(params, n)), None)
    current, generated = row["secret_credential_id"], row["secret_generated"]
    if named is not None and named != current:
        _point_at(conn, row["id"], named, generated=False, old=current if generated else None)
    elif named is None and current is not None and not (generated and node.subtype in GENERATED):
        # A named credential was removed, or the node no longer has a secret.
        _point_at(conn, row["id"], None, generated=False, old=current if generated else None)
    if node.subtype == "CRON":
        repo.upsert_schedule(
            conn,
            workspace_id=workspace_id,
            trigger_id=row["id"],
            cron=params.cron,
            timezone=params.timezone,
            missed_policy=params.missed_fire_policy,
            next_fire_at=next_fire(params.cron, params.timezone, now),
        )
    else:
        repo.deactivate_schedule(conn, row["id"])


def _point_at(
    conn: Conn, trigger_id: UUID, credential_id: UUID | None, *, generated: bool, old: UUID | None
) -> None:
    """Point the trigger at ``credential_id``; delete ``old``, a secret Loom generated."""
    repo.set_secret(conn, trigger_id, credential_id, generated)
    if old is not None:
        credentials_repo.delete_credential(conn, old)


def _replace_secret(
    conn: Conn, vault: Vault, workspace_id: UUID, row: dict[str, Any], secret: str
) -> None:
    old = row["secret_credential_id"]
    credential_id = uuid4()
    kind = CredentialType.WEBHOOK_SECRET.value
    plaintext = json.dumps({"secret": secret}).encode()
    sealed = vault.seal(plaintext, Binding(workspace_id, credential_id, kind))
    _point_at(conn, row["id"], None, generated=False, old=old)
    credentials_repo.insert_credential(
        conn,
        credential_id=credential_id,
        workspace_id=workspace_id,
        name=f"trigger {row['id']} ({row['node_id']})",
        credential_type=kind,
        ciphertext=sealed.ciphertext,
        nonce=sealed.nonce,
        wrapped_key=sealed.wrapped_key,
        key_id=sealed.key_id,
        metadata={"fields": ["secret"], "generated_for_trigger": str(row["id"])},
        created_by=None,
    )
    repo.set_secret(conn, row["id"], credential_id, True)


def _workflow(conn: Conn, workflow_id: UUID, *, lock: bool = False) -> dict[str, Any]:
    row = workflows_repo.get_workflow(conn, workflow_id, lock=lock)
    if row is None:
        raise NotFound(f"Workflow {workflow_id} not found.", solution="Check the workflow id.")
    return row
