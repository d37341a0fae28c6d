"""``/v1/agents/{agent_id}/readiness`` and ``/v1/agents/{agent_id}/exams``: whether an
agent may sit its graduation exam, and the exams themselves.

``POST .../exams`` runs the exam while the request waits (at most
``LOOM_AGENT_EXAM_DEADLINE_SECONDS``) and answers 201 with the finished exam: passed (the
agent is promoted one level) or failed (the report says what failed). The agent must be
ready first, unless an admin sends ``{"force": true}``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from loom.agents import exams
from loom.agents.exam_worker import exam_options
from loom.agents.readiness import readiness, thresholds
from loom.api.agent_runtime import AgentRuntimeDep
from loom.api.deps import DatabaseDep, SettingsDep, allow
from loom.auth.principal import Principal, Role

router = APIRouter(prefix="/v1/agents/{agent_id}", tags=["agents"])

Reader = Annotated[Principal, allow(Role.VIEWER, "agents:read")]
Writer = Annotated[Principal, allow(Role.EDITOR, "agents:write")]


class StartExamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(
        default=False,
        description="Examine even if the agent is not ready yet (admins and owners only).",
    )


class CriterionOut(BaseModel):
    name: str
    value: float | None
    threshold: float
    comparison: Literal[">=", "<="]
    passed: bool
    description: str


class ReadinessOut(BaseModel):
    agent_id: UUID
    version: int = Field(description="The live version, whose episodes count.")
    maturity: str
    next_level: str | None = Field(description="None: AUTONOMOUS, the highest level.")
    ready: bool = Field(description="Whether every criterion for next_level is met.")
    since: datetime | None = Field(
        description="Episodes count from the agent's last change of maturity."
    )
    criteria: list[CriterionOut]
    counts: dict[str, Any]
    reason: str


class ExamOut(BaseModel):
    id: UUID
    agent_id: UUID
    agent_version: int
    from_level: str
    to_level: str
    status: Literal["running", "passed", "failed", "error"]
    cases: dict[str, Any] = Field(description="The exam as it was examined.")
    report: dict[str, Any] | None = Field(
        description="Per stage the score, the cases with each run's checks, what failed, "
        "and whether the agent was promoted."
    )
    started_by: str
    created_at: datetime
    finished_at: datetime | None


class ExamListOut(BaseModel):
    items: list[ExamOut]
    next_offset: int | None


@router.get("/readiness", response_model=ReadinessOut)
def handle_get_readiness(
    agent_id: UUID, db: DatabaseDep, settings: SettingsDep, principal: Reader
) -> ReadinessOut:
    found = readiness(db, principal.workspace_id, agent_id, thresholds(settings.agent_readiness))
    return ReadinessOut.model_validate(found.record())


@router.post("/exams", status_code=201, response_model=ExamOut)
async def handle_start_exam(
    agent_id: UUID,
    runtime: AgentRuntimeDep,
    settings: SettingsDep,
    principal: Writer,
    body: StartExamRequest | None = None,
) -> ExamOut:
    force = body is not None and body.force
    if force:
        principal.require(role=Role.ADMIN, scope="agents:write")
    options = exam_options(settings, _actor(principal), require_ready=not force)
    row = await exams.run_exam(runtime, principal.workspace_id, agent_id, options)
    return ExamOut(**row)


@router.get("/exams", response_model=ExamListOut)
def handle_list_exams(
    agent_id: UUID,
    db: DatabaseDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ExamListOut:
    rows = exams.list_exams(db, principal.workspace_id, agent_id, limit=limit + 1, offset=offset)
    return ExamListOut(
        items=[ExamOut(**r) for r in rows[:limit]],
        next_offset=offset + limit if len(rows) > limit else None,
    )


@router.get("/exams/{exam_id}", response_model=ExamOut)
def handle_get_exam(agent_id: UUID, exam_id: UUID, db: DatabaseDep, principal: Reader) -> ExamOut:
    return ExamOut(**exams.get_exam(db, principal.workspace_id, agent_id, exam_id))


def _actor(principal: Principal) -> str:
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    return f"api_key:{principal.key_id}" if principal.key_id else "system"
