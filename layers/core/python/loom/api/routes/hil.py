"""``/v1/hil``: requests waiting for a person, and answering them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from loom.api.deps import DatabaseDep, allow
from loom.api.routes.workflows import dispatcher
from loom.auth.principal import Principal, Role
from loom.engine import hil

router = APIRouter(prefix="/v1/hil", tags=["hil"])


class HilRequestOut(BaseModel):
    id: UUID
    run_id: UUID
    node_id: str
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
    run_id: UUID
    status: str


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
    engine.report(principal.workspace_id, answer.run_id, answer.finished)
    status = "responded" if body.approved is None else ("approved" if body.approved else "rejected")
    return RespondOut(id=request_id, run_id=answer.run_id, status=status)
