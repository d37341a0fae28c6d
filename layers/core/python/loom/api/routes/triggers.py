"""Triggers: ``/v1/hooks/{trigger_id}`` (public, verified by each trigger's signature),
deploying and undeploying workflows, their triggers and secrets, and the dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from loom.api.deps import DatabaseDep, SettingsDep, allow, dispatcher
from loom.api.schemas import DeploymentStateOut
from loom.auth.principal import Principal, Role
from loom.config import Settings
from loom.secrets.vault import vault_for
from loom.triggers import dead_letters, deploy
from loom.triggers.errors import BodyTooLarge, TriggerNotFound
from loom.triggers.receive import HTTP_SUBTYPES, Receipt, wait_for_run
from loom.triggers.sources import Answer, HttpDelivery
from loom.triggers.wiring import queue_for, receiver_for

hooks = APIRouter(prefix="/v1/hooks", tags=["triggers"])
router = APIRouter(prefix="/v1", tags=["triggers"])

Reader = Annotated[Principal, allow(Role.VIEWER, "workflows:read")]
Writer = Annotated[Principal, allow(Role.EDITOR, "workflows:write")]
RunReader = Annotated[Principal, allow(Role.VIEWER, "runs:read")]
RunWriter = Annotated[Principal, allow(Role.EDITOR, "runs:write")]


class HookOut(BaseModel):
    status: Literal["started", "queued", "dead_lettered", "skipped", "duplicate", "finished"]
    run_id: UUID | None = None
    event_id: int | None = Field(default=None, description="The queued event's id.")
    run_status: str | None = Field(default=None, description="Sync mode: the run's status.")
    output: Any = Field(default=None, description="Sync mode: the run's output.")
    error: Any = Field(default=None, description="Sync mode: the run's error.")


class ScheduleOut(BaseModel):
    cron: str
    timezone: str
    missed_fire_policy: str
    next_fire_at: datetime | None
    last_fired_at: datetime | None


class TriggerOut(BaseModel):
    id: UUID
    node_id: str
    subtype: str
    active: bool
    url: str | None = Field(default=None, description="Where WEBHOOK, GITHUB, SLACK deliver.")
    address: str | None = Field(default=None, description="Where EMAIL triggers receive mail.")
    secret_status: Literal["generated", "credential", "pending"] | None = Field(
        default=None,
        description="generated: Loom's, shown once when issued; credential: yours; pending: "
        "not issued yet (POST .../secret).",
    )
    secret_credential_id: UUID | None = None
    secret: str | None = Field(default=None, description="Only in the reply that issues it.")
    schedule: ScheduleOut | None = None


class DeploymentOut(DeploymentStateOut):
    triggers: list[TriggerOut]


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    concurrency_policy: Literal["allow", "skip", "queue"] | None = Field(
        default=None, description="Unset: keep the workflow's current policy (initially allow)."
    )
    lease_ttl_seconds: int | None = Field(
        default=None,
        ge=10,
        le=604_800,
        description="How long one run may hold the workflow under skip or queue.",
    )


class DeadLetterOut(BaseModel):
    id: UUID
    topic: str
    payload: dict[str, Any]
    error: str
    attempts: int
    created_at: datetime
    replayed_at: datetime | None


class DeadLetterListOut(BaseModel):
    items: list[DeadLetterOut]
    next_before: datetime | None


class ReplayOut(BaseModel):
    dead_letter_id: UUID
    event_id: int
    status: Literal["queued"] = "queued"


# -- receiving ------------------------------------------------------------------------------


@hooks.post(
    "/{trigger_id}",
    status_code=202,
    response_model=HookOut,
    responses={200: {"description": "A replay, an event the trigger filters out, a sync "
                     "run's output, or a challenge (Slack, GitHub ping)."}},
)  # fmt: skip
async def handle_receive_hook(
    trigger_id: str, request: Request, db: DatabaseDep, settings: SettingsDep
) -> JSONResponse:
    """A delivery to a WEBHOOK, GITHUB or SLACK trigger; no credentials but its signature."""
    received_at = datetime.now(UTC)
    engine = dispatcher(request)
    target = _trigger_id(trigger_id)
    delivery = HttpDelivery(
        body=await _body(request, settings.webhook_max_body_bytes),
        headers={name.lower(): value for name, value in request.headers.items()},
        query=dict(request.query_params),
        received_at=received_at,
    )
    receiver = receiver_for(settings, db, engine)
    receipt = await run_in_threadpool(receiver.receive_http, target, delivery)
    if isinstance(receipt, Answer):
        return JSONResponse(receipt.body)
    if receipt.sync_timeout is not None and receipt.run_id and receipt.workspace_id:
        run = await wait_for_run(db, receipt.workspace_id, receipt.run_id, receipt.sync_timeout)
        if run is not None:
            return _reply(receipt, 200, status="finished", run=run)
    return _reply(receipt, 200 if receipt.status == "duplicate" else 202)


def _trigger_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise TriggerNotFound(
            "No deployed trigger accepts deliveries here.", solution="Check the trigger URL."
        ) from None


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_large = BodyTooLarge(
        f"Webhook bodies are limited to {limit:,} bytes.",
        solution="Send less, or a reference to the data instead of the data.",
    )
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = await request.body()
    if len(body) > limit:
        raise too_large
    return body


def _reply(
    receipt: Receipt,
    code: int,
    *,
    status: Literal["finished"] | None = None,
    run: dict[str, Any] | None = None,
) -> JSONResponse:
    out = HookOut(
        status=status or receipt.status,
        run_id=receipt.run_id,
        event_id=receipt.event_id,
        run_status=run["status"] if run else None,
        output=run["output"] if run else None,
        error=run["error"] if run else None,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=code)


# -- deploying ------------------------------------------------------------------------------


@router.post("/workflows/{workflow_id}/deploy", response_model=DeploymentOut)
def handle_deploy_workflow(
    workflow_id: UUID,
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: Writer,
    body: Annotated[DeployRequest | None, Body()] = None,
) -> DeploymentOut:
    """Bind the live version's triggers (idempotent); generated secrets issued now are in
    this reply, once."""
    options = body or DeployRequest()
    bound = deploy.deploy_and_issue(
        db,
        vault_for(settings),
        principal.workspace_id,
        workflow_id,
        concurrency_policy=options.concurrency_policy,
        lease_ttl_seconds=options.lease_ttl_seconds,
    )
    base = _base_url(request, settings)
    triggers = [
        _trigger(row, base, settings, bound.issued.get(row["node_id"])) for row in bound.triggers
    ]
    return DeploymentOut(**DeploymentStateOut.of(bound.deployment).model_dump(), triggers=triggers)


@router.post("/workflows/{workflow_id}/undeploy", response_model=DeploymentStateOut)
def handle_undeploy_workflow(
    workflow_id: UUID, db: DatabaseDep, principal: Writer
) -> DeploymentStateOut:
    """Unbind every trigger (idempotent); their ids, URLs and secrets come back on deploy."""
    return DeploymentStateOut.of(deploy.undeploy(db, principal.workspace_id, workflow_id))


@router.get("/workflows/{workflow_id}/triggers", response_model=list[TriggerOut])
def handle_list_triggers(
    workflow_id: UUID, request: Request, db: DatabaseDep, settings: SettingsDep, principal: Reader
) -> list[TriggerOut]:
    rows = deploy.list_triggers(db, principal.workspace_id, workflow_id)
    base = _base_url(request, settings)
    return [_trigger(row, base, settings, None) for row in rows]


@router.post("/workflows/{workflow_id}/triggers/{node_id}/secret", response_model=TriggerOut)
def handle_issue_secret(
    workflow_id: UUID,
    node_id: str,
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: Writer,
) -> TriggerOut:
    """Issue a new generated secret (rotating any earlier one at once); shown here, once."""
    workspace = principal.workspace_id
    secret = deploy.issue_secret(db, vault_for(settings), workspace, workflow_id, node_id)
    row = next(
        r for r in deploy.list_triggers(db, workspace, workflow_id) if r["node_id"] == node_id
    )
    return _trigger(row, _base_url(request, settings), settings, secret)


def _base_url(request: Request, settings: Settings) -> str:
    return (settings.public_url or str(request.base_url)).rstrip("/")


def _trigger(row: dict[str, Any], base: str, settings: Settings, secret: str | None) -> TriggerOut:
    subtype = row["subtype"]
    status: Literal["generated", "credential", "pending"] | None = None
    if row["secret_credential_id"] is not None:
        status = "generated" if row["secret_generated"] else "credential"
    elif subtype in deploy.GENERATED:
        status = "pending"
    schedule = None
    if row.get("cron"):
        schedule = ScheduleOut(
            cron=row["cron"],
            timezone=row["timezone"],
            missed_fire_policy=row["missed_policy"],
            next_fire_at=row["next_fire_at"],
            last_fired_at=row["last_fired_at"],
        )
    return TriggerOut(
        id=row["id"],
        node_id=row["node_id"],
        subtype=subtype,
        active=row["active"],
        url=f"{base}/v1/hooks/{row['id']}" if subtype in HTTP_SUBTYPES else None,
        address=f"{row['id']}@{settings.mail_domain}" if subtype == "EMAIL" else None,
        secret_status=status,
        secret_credential_id=row["secret_credential_id"] if status == "credential" else None,
        secret=secret,
        schedule=schedule,
    )


# -- dead letters ---------------------------------------------------------------------------


@router.get("/dead-letters", response_model=DeadLetterListOut)
def handle_list_dead_letters(
    db: DatabaseDep,
    principal: RunReader,
    topic: Annotated[str | None, Query(max_length=100)] = None,
    replayed: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: datetime | None = None,
) -> DeadLetterListOut:
    rows = dead_letters.list_dead_letters(
        db, principal.workspace_id, topic=topic, replayed=replayed, limit=limit + 1, before=before
    )
    items = [DeadLetterOut(**row) for row in rows[:limit]]
    more = len(rows) > limit
    return DeadLetterListOut(items=items, next_before=items[-1].created_at if more else None)


@router.get("/dead-letters/{dead_letter_id}", response_model=DeadLetterOut)
def handle_get_dead_letter(
    dead_letter_id: UUID, db: DatabaseDep, principal: RunReader
) -> DeadLetterOut:
    return DeadLetterOut(**dead_letters.get_dead_letter(db, principal.workspace_id, dead_letter_id))


@router.post("/dead-letters/{dead_letter_id}/replay", status_code=202, response_model=ReplayOut)
def handle_replay_dead_letter(
    dead_letter_id: UUID, db: DatabaseDep, settings: SettingsDep, principal: RunWriter
) -> ReplayOut:
    """Queue the event again (once per dead letter); it is processed like a new delivery."""
    queue = queue_for(settings, db)
    event_id = dead_letters.replay(db, queue, principal.workspace_id, dead_letter_id)
    return ReplayOut(dead_letter_id=dead_letter_id, event_id=event_id)
