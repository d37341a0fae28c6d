"""``/v1/builder``: the workflow builder's conversation, dry run and save.

Turns stream as Server-Sent Events, like a run's events: ``session`` (its id, first),
``attempt`` (the model is asked; round 0, then one per repair), ``delta`` (answer text as
it arrives), ``repair`` (the problems sent back), then ``turn`` (the draft, explanation,
questions, gaps and diff) or ``error`` (the one error shape), and ``end``. Bad input and
unknown ids fail before the stream starts, as plain HTTP errors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from loom.api.deps import DatabaseDep, SettingsDep, allow
from loom.api.errors import error_body
from loom.auth.principal import Principal, Role
from loom.builder import sessions
from loom.builder.drafting import Attempt, Delta, Repair
from loom.builder.dry_run import DryRunOptions
from loom.builder.explain import explain_run
from loom.config import Settings
from loom.db import Database
from loom.errors import LoomError
from loom.llm.gateway import LlmGateway
from loom.secrets.vault import vault_for
from loom.workflows.definition import MAX_NAME_LENGTH

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/builder", tags=["builder"])
# POST /v1/runs/{id}/explain: under /v1/runs, but served with the builder (it calls models).
explain_router = APIRouter(prefix="/v1/runs", tags=["runs"])

Reader = Annotated[Principal, allow(Role.VIEWER, "workflows:read")]
Writer = Annotated[Principal, allow(Role.EDITOR, "workflows:write")]
RunWriter = Annotated[Principal, allow(Role.EDITOR, "runs:write")]

_STREAM: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}}}
_CREATED: dict[int | str, dict[str, Any]] = {201: {"content": {"text/event-stream": {}}}}
_STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
MODEL_PATTERN = r"^[A-Za-z0-9_.-]+/\S+$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ModelChoice(_Request):
    model: str | None = Field(
        default=None,
        min_length=3,
        max_length=200,
        pattern=MODEL_PATTERN,
        description="provider/model to draft with. Default: LOOM_BUILDER_MODEL.",
        examples=["openai/gpt-4o-mini"],
    )
    credential_id: str | None = Field(
        default=None, max_length=200, description="An llm_api_key credential for the model."
    )


class CreateSessionRequest(_ModelChoice):
    description: str = Field(
        description="What the workflow should do, in plain language (at most 20,000 characters).",
        examples=["When a support ticket arrives by webhook, post the urgent ones to Slack."],
    )


class MessageRequest(_ModelChoice):
    message: str = Field(
        description="A change or an answer (at most 20,000 characters).",
        examples=["Also email me when it fails."],
    )


class DryRunRequest(_Request):
    input: Any = Field(default=None, description="The sample run input.")
    agents: Literal["record", "call"] = Field(
        default="record",
        description="record: AI agents are recorded like side effects; call: agents without "
        "attachments ask their model through the gateway.",
    )
    approvals: Literal["approve", "reject"] = Field(
        default="approve", description="The decision approvals take (unless they set a default)."
    )


class SaveRequest(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    workflow_id: UUID | None = Field(
        default=None,
        description="Add a version to this workflow. Default: the one this session saved "
        "before, else a new workflow.",
    )
    publish: bool = Field(default=True, description="Make the new version the live one.")


class TurnOut(BaseModel):
    seq: int
    message: str
    draft: dict[str, Any]
    explanation: str
    questions: list[str]
    gaps: list[dict[str, Any]]
    diff: dict[str, Any] | None
    repair_rounds: int
    model: str
    created_at: datetime


class SessionOut(BaseModel):
    id: UUID
    model: str
    description: str
    draft: dict[str, Any] | None
    explanation: str
    questions: list[str]
    gaps: list[dict[str, Any]]
    turns: list[TurnOut]
    workflow_id: UUID | None
    created_at: datetime
    updated_at: datetime


class SaveOut(BaseModel):
    session_id: UUID
    workflow_id: UUID
    version: int
    created: bool
    gaps: list[dict[str, Any]] = Field(description="Advisory gaps still open.")


def builder_gateway(request: Request, db: Database, settings: Settings) -> LlmGateway:
    """One gateway per app for the builder's calls (its circuit breakers live in it)."""
    found: LlmGateway | None = getattr(request.app.state, "builder_llm", None)
    if found is None:
        found = LlmGateway(db, settings=settings, vault=vault_for(settings))
        request.app.state.builder_llm = found
    return found


@router.post("/sessions", status_code=201, responses=_CREATED)
def handle_create_session(
    body: CreateSessionRequest,
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: Writer,
) -> StreamingResponse:
    """Start a conversation: the first turn streams as Server-Sent Events."""
    choice = sessions.choose_model(body.model, body.credential_id, settings)
    plan = sessions.open_session(
        db, principal.workspace_id, body.description, choice, created_by=principal.user_id
    )
    return _stream(request, db, settings, plan, status_code=201)


@router.get("/sessions/{session_id}", response_model=SessionOut)
def handle_get_session(session_id: UUID, db: DatabaseDep, principal: Reader) -> SessionOut:
    found = sessions.get_session(db, principal.workspace_id, session_id)
    return SessionOut(**{**found, "turns": [TurnOut(**t) for t in found["turn_list"]]})


@router.post("/sessions/{session_id}/messages", responses=_STREAM)
def handle_send_message(
    session_id: UUID,
    body: MessageRequest,
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: Writer,
) -> StreamingResponse:
    """Refine the draft: the turn streams as Server-Sent Events, with a diff."""
    plan = sessions.plan_message(
        db,
        principal.workspace_id,
        session_id,
        body.message,
        model=body.model,
        credential_id=body.credential_id,
    )
    return _stream(request, db, settings, plan, status_code=200)


@router.post("/sessions/{session_id}/dry-run")
async def handle_dry_run(
    session_id: UUID,
    body: DryRunRequest,
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: Writer,
) -> dict[str, Any]:
    """Run the draft on sample input; side effects are recorded, never sent."""
    options = DryRunOptions(
        input=body.input,
        agents=body.agents,
        approvals=body.approvals,
        deadline_seconds=settings.builder_dry_run_seconds,
    )
    llm = builder_gateway(request, db, settings) if body.agents == "call" else None
    return await sessions.dry_run_session(
        db,
        principal.workspace_id,
        session_id,
        options,
        vault=vault_for(settings),
        llm=llm,
    )


@router.post("/sessions/{session_id}/save", response_model=SaveOut)
def handle_save_session(
    session_id: UUID, body: SaveRequest, db: DatabaseDep, principal: Writer
) -> SaveOut:
    """Create the workflow from the draft, or add a version to it."""
    saved = sessions.save_session(
        db,
        principal.workspace_id,
        session_id,
        name=body.name,
        workflow_id=body.workflow_id,
        publish=body.publish,
        created_by=principal.user_id,
    )
    return SaveOut(**saved)


def _stream(
    request: Request, db: Database, settings: Settings, plan: sessions.TurnPlan, *, status_code: int
) -> StreamingResponse:
    llm = builder_gateway(request, db, settings)
    events = sessions.run_turn(db, llm, settings, plan)
    return StreamingResponse(
        _sse(events, plan.session_id),
        status_code=status_code,
        media_type="text/event-stream",
        headers=_STREAM_HEADERS,
    )


async def _sse(events: AsyncIterator[sessions.TurnEvent], session_id: UUID) -> AsyncIterator[str]:
    yield _event("session", {"session_id": str(session_id)})
    try:
        async for event in events:
            if isinstance(event, Attempt):
                yield _event("attempt", {"round": event.round})
            elif isinstance(event, Delta):
                yield _event("delta", {"text": event.text})
            elif isinstance(event, Repair):
                yield _event("repair", {"round": event.round, "problems": event.problems})
            elif isinstance(event, sessions.TurnDone):
                yield _event("turn", event.turn)
    except LoomError as exc:
        yield _event("error", error_body(exc.code, exc.message, exc.solution, exc.details)["error"])
    except Exception:  # the stream has started: the error travels as an event
        log.exception("builder turn failed")
        body = error_body(
            "internal", "Something went wrong on our side.", "Retry; if it persists, report it."
        )
        yield _event("error", body["error"])
    yield _event("end", {"session_id": str(session_id)})


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(
        default=None,
        min_length=3,
        max_length=200,
        pattern=MODEL_PATTERN,
        description="provider/model to ask. Default: LOOM_BUILDER_MODEL.",
    )
    credential_id: str | None = Field(default=None, max_length=200)


@explain_router.post("/{run_id}/explain")
async def handle_explain_run(
    run_id: UUID,
    body: ExplainRequest,
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: RunWriter,
) -> dict[str, Any]:
    """Why a failed run failed (its failing node, the likely cause) and a fix as a draft
    diff, from the workflow builder."""
    choice = sessions.choose_model(body.model, body.credential_id, settings)
    llm = builder_gateway(request, db, settings)
    return await explain_run(db, llm, settings, principal.workspace_id, run_id, choice)
