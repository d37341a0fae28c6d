"""``/v1/hil``: requests waiting for a person, and answering them; ``/v1/public/hil``: the
same through a request's one-time link, for people and services without a Loom login."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from loom.api.deps import DatabaseDep, allow, dispatcher
from loom.auth.principal import Principal, Role
from loom.engine import hil

router = APIRouter(prefix="/v1/hil", tags=["hil"])
links = APIRouter(prefix="/v1/public/hil", tags=["hil"])


class HilRequestOut(BaseModel):
    id: UUID
    run_id: UUID | None = Field(description="None for an agent's tool approval asked in chat.")
    node_id: str | None = None
    episode_id: UUID | None = Field(default=None, description="For an agent's tool approval.")
    kind: str
    status: str
    request: dict[str, Any]
    response: Any = None
    channels: list[str]
    timeout_action: str
    expires_at: datetime
    created_at: datetime
    responded_at: datetime | None = None


class RespondRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approved: bool | None = Field(default=None, description="For approvals: approve or reject.")
    data: Any = Field(default=None, description="For input requests: the answer.")


class RespondOut(BaseModel):
    id: UUID
    run_id: UUID | None
    status: str


class LinkedRequestOut(BaseModel):
    """What the holder of a respond link sees: the question, not the workspace."""

    id: UUID
    kind: str
    status: str
    title: str
    message: str
    form: dict[str, Any] | None = None
    expires_at: datetime


@router.get("", response_model=list[HilRequestOut])
def handle_list_requests(
    db: DatabaseDep,
    principal: Annotated[Principal, allow(Role.VIEWER, "hil:respond")],
    status: Literal["pending", "approved", "rejected", "responded", "timed_out", "cancelled"]
    | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[HilRequestOut]:
    rows = hil.list_requests(db, principal.workspace_id, status=status, limit=limit)
    return [HilRequestOut(**r) for r in rows]


@router.post("/{request_id}/respond", response_model=RespondOut)
def handle_respond(
    request_id: UUID,
    body: RespondRequest,
    request: Request,
    db: DatabaseDep,
    principal: Annotated[Principal, allow(Role.EDITOR, "hil:respond")],
) -> RespondOut:
    engine = dispatcher(request)
    answer = hil.respond(
        db,
        principal.workspace_id,
        request_id,
        approved=body.approved,
        data=body.data,
        responded_by=principal.user_id,
    )
    report = answer.node_report()
    if report is not None:
        engine.report(principal.workspace_id, *report)
    return RespondOut(id=request_id, run_id=answer.run_id, status=answer.status)


_TOKEN = Path(min_length=20, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


@links.get("/{token}", response_model=LinkedRequestOut)
def handle_view_link(token: Annotated[str, _TOKEN], db: DatabaseDep) -> LinkedRequestOut:
    _, row = hil.find_link(db, token)
    shown = row["request"]
    return LinkedRequestOut(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        title=str(shown.get("title", "")),
        message=str(shown.get("message", "")),
        form=shown.get("form"),
        expires_at=row["expires_at"],
    )


@links.post("/{token}/respond", response_model=RespondOut)
def handle_respond_by_link(
    token: Annotated[str, _TOKEN], body: RespondRequest, request: Request, db: DatabaseDep
) -> RespondOut:
    engine = dispatcher(request)
    answer = hil.respond_by_link(db, token, approved=body.approved, data=body.data)
    report = answer.node_report()
    if report is not None:
        engine.report(answer.workspace_id, *report)
    return RespondOut(id=answer.request_id, run_id=answer.run_id, status=answer.status)
