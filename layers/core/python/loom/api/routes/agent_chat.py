"""Chat with governed agents: ``POST /v1/agents/{id}/chat`` streams a turn as Server-Sent
Events; ``GET /v1/agents/{id}/threads`` and ``GET /v1/threads/{id}`` read the threads.

A turn's events, in order: ``thread`` (its id, first), ``summary`` (when older messages
were folded into the running summary), the episode's own events (``episode``, ``recall``,
``governance``, ``approval_required`` with the request id and link, ``approval``,
``tool_call``, ``tool_result``, ``delta``, ``delegation``), then ``message`` (the stored
reply, with its episode id) or ``error`` (the one error shape), and ``end``. Bad input and
unknown ids fail before the stream starts, as plain HTTP errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from loom.agents import chat
from loom.api.agent_runtime import AgentRuntimeDep
from loom.api.deps import DatabaseDep, allow
from loom.auth.principal import Principal, Role

router = APIRouter(prefix="/v1/agents", tags=["agents"])
threads = APIRouter(prefix="/v1/threads", tags=["agents"])

Reader = Annotated[Principal, allow(Role.VIEWER, "agents:read")]
Writer = Annotated[Principal, allow(Role.EDITOR, "agents:write")]

HEARTBEAT_SECONDS = 15.0
_STREAM: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}}}
_STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thread_id: UUID | None = Field(
        default=None, description="Continue this thread of the agent; leave out to start one."
    )
    message: str = Field(
        min_length=1,
        description=f"At most {chat.MAX_MESSAGE_CHARS:,} characters; a longer one is refused "
        "with 413 message_too_large.",
        examples=["Is ticket 4711 urgent?"],
    )


class ThreadOut(BaseModel):
    id: UUID
    agent_id: UUID
    title: str = Field(description="The start of the first message.")
    busy: bool = Field(description="A turn is under way.")
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime


class ThreadSummaryOut(ThreadOut):
    messages: int


class ThreadListOut(BaseModel):
    items: list[ThreadSummaryOut]
    next_offset: int | None


class MessageOut(BaseModel):
    id: int
    role: Literal["user", "assistant"]
    content: str
    episode_id: UUID | None = Field(description="The episode (turn) the message belongs to.")
    tool_calls: list[dict[str, Any]]
    created_at: datetime


class ThreadDetailOut(ThreadOut):
    summary: str | None = Field(description="The running summary of the older messages.")
    summarized_through: int = Field(description="The last message id the summary covers.")
    messages: list[MessageOut] = Field(description="Oldest first.")
    next_after: int | None = Field(description="Pass as ?after= for the messages that follow.")


@router.post("/{agent_id}/chat", responses=_STREAM)
async def handle_chat(
    agent_id: UUID,
    body: ChatRequest,
    request: Request,
    db: DatabaseDep,
    runtime: AgentRuntimeDep,
    principal: Writer,
) -> StreamingResponse:
    """One turn of a conversation with the agent, streamed as Server-Sent Events."""
    plan = await asyncio.to_thread(
        chat.open_turn,
        db,
        principal.workspace_id,
        agent_id,
        body.message,
        thread_id=body.thread_id,
        user_id=principal.user_id,
        engine=request.app.state.dispatcher,
    )
    return StreamingResponse(
        _sse(chat.ChatTurn(runtime, plan)), media_type="text/event-stream", headers=_STREAM_HEADERS
    )


@router.get("/{agent_id}/threads", response_model=ThreadListOut)
def handle_list_threads(
    agent_id: UUID,
    db: DatabaseDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ThreadListOut:
    rows = chat.list_threads(db, principal.workspace_id, agent_id, limit=limit + 1, offset=offset)
    more = len(rows) > limit
    return ThreadListOut(
        items=[ThreadSummaryOut(**r, busy=r["turn_started_at"] is not None) for r in rows[:limit]],
        next_offset=offset + limit if more else None,
    )


@threads.get("/{thread_id}", response_model=ThreadDetailOut)
def handle_get_thread(
    thread_id: UUID,
    db: DatabaseDep,
    principal: Reader,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> ThreadDetailOut:
    """The thread and its messages in order, each with its episode id."""
    thread, rows = chat.get_thread(
        db, principal.workspace_id, thread_id, after=after, limit=limit + 1
    )
    messages = [MessageOut(**r) for r in rows[:limit]]
    return ThreadDetailOut(
        **thread,
        busy=thread["turn_started_at"] is not None,
        messages=messages,
        next_after=messages[-1].id if len(rows) > limit else None,
    )


async def _sse(turn: chat.ChatTurn) -> AsyncIterator[str]:
    """The turn's events, with a comment line every ``HEARTBEAT_SECONDS`` of silence (a
    tool approval may take minutes) so proxies keep the connection."""
    events = aiter(turn)
    pending = asyncio.ensure_future(anext(events, None))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_SECONDS)
            if not done:
                yield ": keep-alive\n\n"
                continue
            event = pending.result()
            if event is None:
                break
            yield _event(event.kind, event.data)
            pending = asyncio.ensure_future(anext(events, None))
    finally:
        pending.cancel()  # the caller went away: the turn goes on without it
    yield _event("end", {"thread_id": str(turn.plan.thread_id)})


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"
