"""``/v1/runs``: run state, the live event stream, cancel and rerun."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from loom.api.deps import AsyncDatabaseDep, DatabaseDep, allow, dispatcher
from loom.auth.principal import Principal, Role
from loom.db.async_database import AsyncDatabase
from loom.engine import service
from loom.engine.states import RunStatus

router = APIRouter(prefix="/v1/runs", tags=["runs"])

Reader = Annotated[Principal, allow(Role.VIEWER, "runs:read")]
Writer = Annotated[Principal, allow(Role.EDITOR, "runs:write")]

POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0
PAGE = 500


class NodeRunOut(BaseModel):
    id: UUID
    node_id: str
    status: str
    attempt: int
    output: Any = None
    output_ref: str | None = None
    output_port: str | None = None
    error: Any = None
    reused_from: UUID | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunOut(BaseModel):
    id: UUID
    workflow_id: UUID
    workflow_version: int
    status: str
    input: Any = None
    output: Any = None
    output_ref: str | None = None
    error: Any = None
    trigger: dict[str, Any]
    parent_run_id: UUID | None = None
    rerun_of: UUID | None = None
    rerun_from_node: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunDetailOut(RunOut):
    nodes: list[NodeRunOut]


class RunListOut(BaseModel):
    items: list[RunOut]
    next_before: datetime | None


class EventOut(BaseModel):
    seq: int
    type: str
    node_id: str | None
    data: dict[str, Any]
    created_at: datetime


class EventPageOut(BaseModel):
    events: list[EventOut]
    next_after: int = Field(description="Pass as ?after= to get the events that follow.")
    finished: bool = Field(description="The run is over and every event has been sent.")


class RerunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_node: str = Field(min_length=1, max_length=64)


class RunStartedOut(BaseModel):
    run_id: UUID
    status: str


class CancelOut(BaseModel):
    run_id: UUID
    status: str


@router.get("", response_model=RunListOut)
async def handle_list_runs(
    adb: AsyncDatabaseDep,
    principal: Reader,
    workflow_id: UUID | None = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: datetime | None = None,
) -> RunListOut:
    rows = await service.read_runs(
        adb,
        principal.workspace_id,
        workflow_id=workflow_id,
        status=status.value if status else None,
        limit=limit + 1,
        before=before,
    )
    more = len(rows) > limit
    items = [RunOut(**r) for r in rows[:limit]]
    return RunListOut(items=items, next_before=items[-1].created_at if more else None)


@router.get("/{run_id}", response_model=RunDetailOut)
async def handle_get_run(run_id: UUID, adb: AsyncDatabaseDep, principal: Reader) -> RunDetailOut:
    detail = await service.read_run(adb, principal.workspace_id, run_id)
    return RunDetailOut(**detail.run, nodes=[NodeRunOut(**n) for n in detail.nodes])


@router.get(
    "/{run_id}/events",
    response_model=EventPageOut,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def handle_run_events(
    run_id: UUID,
    adb: AsyncDatabaseDep,
    principal: Reader,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> Any:
    """Server-Sent Events until the run is over; with ``?after=<seq>``, one JSON page.
    Polled on the event loop: an open stream holds no thread, between polls or during."""
    workspace = principal.workspace_id
    if after is None:
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    else:
        start = after
    # The first page is read before any streaming starts, so an unknown run is a 404.
    page = await service.read_events_page(adb, workspace, run_id, start, PAGE)
    if after is not None:
        events, finished = page
        items = [EventOut(**e) for e in events]
        return EventPageOut(
            events=items, next_after=items[-1].seq if items else after, finished=finished
        )
    return StreamingResponse(
        _stream(adb, workspace, run_id, start, page),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(
    db: AsyncDatabase, workspace: UUID, run_id: UUID, after: int, page: service.EventsPage
) -> AsyncIterator[str]:
    idle = 0.0
    while True:
        events, finished = page
        for event in events:
            after = event["seq"]
            payload = EventOut(**event).model_dump_json()
            yield f"id: {after}\nevent: {event['type']}\ndata: {payload}\n\n"
        if finished:
            yield f"event: end\ndata: {json.dumps({'run_id': str(run_id)})}\n\n"
            return
        if events:
            idle = 0.0
        else:
            await asyncio.sleep(POLL_SECONDS)
            idle += POLL_SECONDS
            if idle >= HEARTBEAT_SECONDS:
                idle = 0.0
                yield ": keep-alive\n\n"
        page = await service.read_events_page(db, workspace, run_id, after, PAGE)


@router.post("/{run_id}/cancel", response_model=CancelOut)
def handle_cancel_run(
    run_id: UUID, request: Request, db: DatabaseDep, principal: Writer
) -> CancelOut:
    service.get_run(db, principal.workspace_id, run_id)
    status = dispatcher(request).cancel(principal.workspace_id, run_id, "Cancelled by request.")
    return CancelOut(run_id=run_id, status=status.value)


@router.post("/{run_id}/rerun", status_code=202, response_model=RunStartedOut)
def handle_rerun(
    run_id: UUID, body: RerunRequest, request: Request, db: DatabaseDep, principal: Writer
) -> RunStartedOut:
    engine = dispatcher(request)
    new_run = service.rerun_from(
        db, principal.workspace_id, run_id, body.from_node, created_by=principal.user_id
    )
    engine.submit(principal.workspace_id, new_run)
    return RunStartedOut(run_id=new_run, status=RunStatus.NEW.value)
