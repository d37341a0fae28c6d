"""``/v1/workflows``: definitions, versions, and starting runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from loom.api.deps import AsyncDatabaseDep, DatabaseDep, SettingsDep, allow, dispatcher
from loom.api.schemas import DeploymentStateOut
from loom.auth.principal import Principal, Role
from loom.engine.dispatch import submit_from_loop
from loom.engine.service import start_run_awaited
from loom.triggers.deploy import Deployment
from loom.workflows import service
from loom.workflows.definition import MAX_NAME_LENGTH

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])

Reader = Annotated[Principal, allow(Role.VIEWER, "workflows:read")]
Writer = Annotated[Principal, allow(Role.EDITOR, "workflows:write")]
Runner = Annotated[Principal, allow(Role.EDITOR, "runs:write")]

_DEFINITION_EXAMPLE = {
    "nodes": [
        {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
        {
            "id": "greet",
            "type": "ACTION",
            "subtype": "TRANSFORM",
            "parameters": {"value": "Hello {% $input.name %}"},
        },
    ],
    "edges": [{"from": "start", "to": "greet"}],
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateWorkflowRequest(_Request):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, examples=["Greeter"])
    description: str = Field(default="", max_length=10_000)
    definition: dict[str, Any] = Field(
        description="nodes and edges (a `name` inside is replaced by the one above)",
        examples=[_DEFINITION_EXAMPLE],
    )

    def document(self) -> dict[str, Any]:
        return {**self.definition, "name": self.name, "description": self.description}


class UpdateWorkflowRequest(CreateWorkflowRequest):
    publish: bool = Field(default=True, description="Make the new version the live one.")


class PublishRequest(_Request):
    version: int = Field(ge=1)


class StartRunRequest(_Request):
    input: Any = Field(default=None, examples=[{"name": "Ada"}])
    version: int | None = Field(default=None, ge=1, description="Default: the live version.")


class WorkflowOut(BaseModel):
    id: UUID
    name: str
    description: str
    version: int = Field(description="The latest version.")
    live_version: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> WorkflowOut:
        return cls(**{**row, "version": row["latest_version"]})


class WorkflowDetailOut(WorkflowOut):
    definition: dict[str, Any] = Field(description="The live version's definition.")
    deployment: DeploymentStateOut

    @classmethod
    def of(cls, row: dict[str, Any]) -> WorkflowDetailOut:
        deployment = DeploymentStateOut.of(Deployment.of(row))
        return cls(**{**row, "version": row["latest_version"], "deployment": deployment})


class WorkflowListOut(BaseModel):
    items: list[WorkflowOut]
    next_offset: int | None


class VersionOut(BaseModel):
    version: int
    checksum: str
    created_by: UUID | None
    created_at: datetime


class VersionDetailOut(VersionOut):
    definition: dict[str, Any]


class StartRunOut(BaseModel):
    run_id: UUID
    status: str
    created: bool = Field(description="False when the Idempotency-Key matched an earlier run.")


@router.post("", status_code=201, response_model=WorkflowDetailOut)
def handle_create_workflow(
    body: CreateWorkflowRequest, db: DatabaseDep, principal: Writer
) -> WorkflowDetailOut:
    saved = service.create_workflow(
        db, principal.workspace_id, body.document(), created_by=principal.user_id
    )
    return WorkflowDetailOut.of(service.get_workflow(db, principal.workspace_id, saved.workflow_id))


@router.get("", response_model=WorkflowListOut)
def handle_list_workflows(
    db: DatabaseDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> WorkflowListOut:
    rows = service.list_workflows(db, principal.workspace_id, limit=limit + 1, offset=offset)
    more = len(rows) > limit
    return WorkflowListOut(
        items=[WorkflowOut.of(r) for r in rows[:limit]],
        next_offset=offset + limit if more else None,
    )


@router.get("/{workflow_id}", response_model=WorkflowDetailOut)
def handle_get_workflow(workflow_id: UUID, db: DatabaseDep, principal: Reader) -> WorkflowDetailOut:
    return WorkflowDetailOut.of(service.get_workflow(db, principal.workspace_id, workflow_id))


@router.put("/{workflow_id}", response_model=WorkflowDetailOut)
def handle_update_workflow(
    workflow_id: UUID, body: UpdateWorkflowRequest, db: DatabaseDep, principal: Writer
) -> WorkflowDetailOut:
    service.save_version(
        db,
        principal.workspace_id,
        workflow_id,
        body.document(),
        created_by=principal.user_id,
        publish=body.publish,
    )
    return WorkflowDetailOut.of(service.get_workflow(db, principal.workspace_id, workflow_id))


@router.delete("/{workflow_id}", status_code=204)
def handle_delete_workflow(workflow_id: UUID, db: DatabaseDep, principal: Writer) -> Response:
    service.delete_workflow(db, principal.workspace_id, workflow_id)
    return Response(status_code=204)


@router.get("/{workflow_id}/versions", response_model=list[VersionOut])
def handle_list_versions(workflow_id: UUID, db: DatabaseDep, principal: Reader) -> list[VersionOut]:
    rows = service.list_versions(db, principal.workspace_id, workflow_id)
    return [VersionOut(**r) for r in rows]


@router.get("/{workflow_id}/versions/{version}", response_model=VersionDetailOut)
def handle_get_version(
    workflow_id: UUID, version: Annotated[int, Path(ge=1)], db: DatabaseDep, principal: Reader
) -> VersionDetailOut:
    row = service.get_version(db, principal.workspace_id, workflow_id, version)
    return VersionDetailOut(**{k: v for k, v in row.items() if k != "workflow_id"})


@router.get("/{workflow_id}/diff")
def handle_diff_versions(
    workflow_id: UUID,
    db: DatabaseDep,
    principal: Reader,
    before: Annotated[int, Query(alias="from", ge=1)],
    after: Annotated[int, Query(alias="to", ge=1)],
) -> dict[str, Any]:
    return service.diff_versions(db, principal.workspace_id, workflow_id, before, after).to_dict()


@router.post("/{workflow_id}/publish", response_model=WorkflowDetailOut)
def handle_publish(
    workflow_id: UUID, body: PublishRequest, db: DatabaseDep, principal: Writer
) -> WorkflowDetailOut:
    service.publish(db, principal.workspace_id, workflow_id, body.version)
    return WorkflowDetailOut.of(service.get_workflow(db, principal.workspace_id, workflow_id))


@router.post("/{workflow_id}/runs", status_code=202, response_model=StartRunOut)
async def handle_start_run(
    workflow_id: UUID,
    body: StartRunRequest,
    request: Request,
    adb: AsyncDatabaseDep,
    settings: SettingsDep,
    principal: Runner,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> StartRunOut:
    engine = dispatcher(request)
    started = await start_run_awaited(
        adb,
        principal.workspace_id,
        workflow_id,
        body.input,
        version=body.version,
        idempotency_key=idempotency_key,
        created_by=principal.user_id,
        trigger={"type": "manual", "via": "api"},
        max_input_bytes=settings.max_input_bytes,
    )
    if started.created:
        await submit_from_loop(engine, principal.workspace_id, started.run_id)
    return StartRunOut(run_id=started.run_id, status=started.status.value, created=started.created)
