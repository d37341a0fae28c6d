"""Builder sessions: the conversation, the current draft, dry runs and saving.

A turn is planned synchronously (the text checked, the session and the workspace read), so
bad input and unknown ids fail as plain HTTP errors before any stream starts; then it is
drafted, and only a draft that validates is stored, as a new turn with its diff from the
previous draft. A failed turn stores nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from loom.builder.drafting import Attempt, Delta, Drafted, ModelChoice, Repair, draft
from loom.builder.dry_run import DryRun, DryRunOptions
from loom.builder.errors import BuilderModelMissing, GapsOpen, NoDraft, TextTooLong
from loom.builder.gaps import blocking, mark
from loom.builder.grounding import first_messages, refine_messages
from loom.builder.workspace import Resources, load_resources
from loom.config import BuilderSettings
from loom.db import builder as repo
from loom.db.database import Conn, Database
from loom.engine.services import ServicesCache
from loom.errors import Conflict, InvalidInput, NotFound
from loom.llm.gateway import LlmGateway
from loom.secrets.vault import Vault
from loom.workflows import service as workflows
from loom.workflows.definition import WorkflowDefinition
from loom.workflows.diff import diff_definitions

MAX_TEXT_CHARS = 20_000


@dataclass(frozen=True)
class TurnPlan:
    workspace_id: UUID
    session_id: UUID
    message: str
    messages: list[dict[str, Any]]
    previous: dict[str, Any] | None
    resources: Resources
    choice: ModelChoice
    based_on: int


@dataclass(frozen=True)
class TurnDone:
    turn: dict[str, Any]


TurnEvent = Attempt | Delta | Repair | TurnDone


def checked_text(text: str, what: str) -> str:
    """The description or message, refused before anything is stored if it is empty, too
    long, or holds NUL characters."""
    if len(text) > MAX_TEXT_CHARS:
        raise TextTooLong(
            f"The {what} is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}.",
            solution="Describe the steps, the apps and the conditions in fewer words; leave "
            "out sample data and logs (give sample input to the dry run instead).",
        )
    if not text.strip():
        raise InvalidInput(
            f"The {what} is empty.",
            solution='Say what the workflow should do, e.g. "when a ticket arrives by webhook, '
            'post urgent ones to Slack".',
        )
    if "\x00" in text:
        raise InvalidInput(f"The {what} contains NUL characters.", solution="Remove them.")
    return text.strip()


def choose_model(
    model: str | None, credential_id: str | None, settings: BuilderSettings
) -> ModelChoice:
    chosen = model or settings.builder_model
    if chosen is None:
        raise BuilderModelMissing(
            "No model was named and no builder model is configured.",
            solution="Name one in the request (`model`: e.g. openai/gpt-4o-mini, or "
            "local/smollm2-135m-instruct offline), or set LOOM_BUILDER_MODEL.",
        )
    return ModelChoice(chosen, credential_id)


def open_session(
    db: Database,
    workspace_id: UUID,
    description: str,
    choice: ModelChoice,
    *,
    created_by: UUID | None = None,
) -> TurnPlan:
    description = checked_text(description, "description")
    with db.tenant(workspace_id) as conn:
        row = repo.insert_session(
            conn,
            workspace_id=workspace_id,
            created_by=created_by,
            model=choice.model,
            credential_id=choice.credential_id,
            description=description,
        )
        resources = load_resources(conn)
    return TurnPlan(
        workspace_id=workspace_id,
        session_id=row["id"],
        message=description,
        messages=first_messages(description, resources),
        previous=None,
        resources=resources,
        choice=choice,
        based_on=0,
    )


def plan_message(
    db: Database,
    workspace_id: UUID,
    session_id: UUID,
    message: str,
    *,
    model: str | None = None,
    credential_id: str | None = None,
) -> TurnPlan:
    message = checked_text(message, "message")
    with db.tenant(workspace_id) as conn:
        session = _require(conn, session_id)
        resources = load_resources(conn)
        turns = repo.list_turns(conn, session_id)
    earlier = [t["message"] for t in turns if t["message"] != session["description"]]
    choice = ModelChoice(
        model or session["model"],
        credential_id or (None if model else session["credential_id"]),
    )
    previous = session["draft"]
    if previous is None:  # no turn has drafted anything yet: start over, with both texts
        messages = first_messages(f"{session['description']}\n{message}", resources)
    else:
        messages = refine_messages(session["description"], earlier, previous, message, resources)
    return TurnPlan(
        workspace_id=workspace_id,
        session_id=session_id,
        message=message,
        messages=messages,
        previous=previous,
        resources=resources,
        choice=choice,
        based_on=session["turns"],
    )


async def run_turn(
    db: Database, llm: LlmGateway, settings: BuilderSettings, plan: TurnPlan
) -> AsyncIterator[TurnEvent]:
    """The drafting events, then the stored turn."""
    async for event in draft(
        llm, plan.workspace_id, plan.choice, plan.messages, plan.resources, settings
    ):
        if isinstance(event, Drafted):
            yield TurnDone(await asyncio.to_thread(_record, db, plan, event))
        else:
            yield event


def _record(db: Database, plan: TurnPlan, drafted: Drafted) -> dict[str, Any]:
    diff = None
    if plan.previous is not None:
        before = WorkflowDefinition.model_validate(plan.previous)
        after = WorkflowDefinition.model_validate(drafted.definition)
        diff = diff_definitions(before, after).to_dict()
    with db.tenant(plan.workspace_id) as conn:
        session = _require(conn, plan.session_id, lock=True)
        if session["turns"] != plan.based_on:
            raise Conflict(
                "Another message changed this session while this one was drafted.",
                solution="Read the session (GET /v1/builder/sessions/{id}) and send the "
                "message again.",
            )
        seq = repo.add_turn(
            conn,
            workspace_id=plan.workspace_id,
            session_id=plan.session_id,
            message=plan.message,
            draft=drafted.definition,
            explanation=drafted.explanation,
            questions=drafted.questions,
            gaps=drafted.gaps,
            diff=diff,
            repair_rounds=drafted.repair_rounds,
            model=drafted.model,
        )
    turn = {
        "session_id": str(plan.session_id),
        "turn": seq,
        "draft": drafted.definition,
        "explanation": drafted.explanation,
        "questions": drafted.questions,
        "gaps": drafted.gaps,
        "diff": diff,
        "repair_rounds": drafted.repair_rounds,
        "model": drafted.model,
    }
    if drafted.notice:
        turn["notice"] = drafted.notice
    return turn


def get_session(db: Database, workspace_id: UUID, session_id: UUID) -> dict[str, Any]:
    with db.tenant(workspace_id) as conn:
        session = _require(conn, session_id)
        turns = repo.list_turns(conn, session_id)
    return {**session, "turn_list": turns}


def current_draft(db: Database, workspace_id: UUID, session_id: UUID) -> dict[str, Any]:
    """The session's draft with its gaps marked against the workspace as it is now (a
    credential created since fills its marker), stored back when that changed it."""
    with db.tenant(workspace_id) as conn:
        session = _require(conn, session_id, lock=True)
        if session["draft"] is None:
            raise NoDraft(
                f"Builder session {session_id} has no draft yet.",
                solution="Send a message describing the workflow first.",
            )
        resources = load_resources(conn)
        marked = mark(session["draft"], resources)
        advisory = [g for g in session["gaps"] if g not in blocking(session["gaps"])]
        gaps = marked.gaps + advisory
        if marked.definition != session["draft"] or gaps != session["gaps"]:
            repo.set_session_draft(conn, session_id, marked.definition, gaps)
    return {**session, "draft": marked.definition, "gaps": gaps}


async def dry_run_session(
    db: Database,
    workspace_id: UUID,
    session_id: UUID,
    options: DryRunOptions,
    *,
    vault: Vault | None,
    llm: LlmGateway | None,
) -> dict[str, Any]:
    session = await asyncio.to_thread(current_draft, db, workspace_id, session_id)
    services = await asyncio.to_thread(ServicesCache(db, vault).for_workspace, workspace_id)
    definition = WorkflowDefinition.model_validate(session["draft"])
    report = await DryRun(workspace_id, session_id, options, services=services, llm=llm).run(
        definition
    )
    return {"session_id": str(session_id), "turn": session["turns"], **report}


def save_session(
    db: Database,
    workspace_id: UUID,
    session_id: UUID,
    *,
    name: str | None = None,
    workflow_id: UUID | None = None,
    publish: bool = True,
    created_by: UUID | None = None,
) -> dict[str, Any]:
    """Create the workflow, or add a version to it (``workflow_id``, else the one this
    session saved before). A draft that still lacks a credential or workflow is refused."""
    session = current_draft(db, workspace_id, session_id)
    open_gaps = blocking(session["gaps"])
    if open_gaps:
        raise GapsOpen(
            f"The draft still needs {len(open_gaps)} thing(s) the workspace lacks.",
            solution="Follow each gap's next_step (see details), then save again.",
            details=open_gaps,
        )
    definition = {**session["draft"], **({"name": name} if name else {})}
    target = workflow_id or session["workflow_id"]
    if target is None:
        saved = workflows.create_workflow(db, workspace_id, definition, created_by=created_by)
    else:
        saved = workflows.save_version(
            db, workspace_id, target, definition, created_by=created_by, publish=publish
        )
    with db.tenant(workspace_id) as conn:
        repo.set_session_workflow(conn, session_id, saved.workflow_id)
    return {
        "session_id": str(session_id),
        "workflow_id": str(saved.workflow_id),
        "version": saved.version,
        "created": saved.created,
        "gaps": session["gaps"],
    }


def _require(conn: Conn, session_id: UUID, *, lock: bool = False) -> dict[str, Any]:
    session = repo.get_session(conn, session_id, lock=lock)
    if session is None:
        raise NotFound(f"Builder session {session_id} not found.", solution="Check the session id.")
    return session
