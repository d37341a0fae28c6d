"""``/v1/agents``: governed agents, their versions and audit log; ``/v1/episodes``: what
they did, and feedback on it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from loom.agents import episodes, registry
from loom.agents.episodes import MAX_CORRECTION_CHARS
from loom.agents.spec import AgentSpec, render_markdown
from loom.api.deps import DatabaseDep, allow
from loom.auth.principal import Principal, Role

router = APIRouter(prefix="/v1/agents", tags=["agents"])
episode_router = APIRouter(prefix="/v1/episodes", tags=["agents"])

Reader = Annotated[Principal, allow(Role.VIEWER, "agents:read")]
Writer = Annotated[Principal, allow(Role.EDITOR, "agents:write")]

_SPEC_EXAMPLE: dict[str, Any] = {
    "role": "support triage",
    "instructions": "Rate each ticket's urgency as low, medium or high, and say why.",
    "model": "openai/gpt-4o-mini",
    "tools": [
        {
            "type": "HTTP_REQUEST",
            "name": "lookup_customer",
            "description": "Find the customer's plan by email.",
            "input_schema": {
                "type": "object",
                "properties": {"email": {"type": "string"}},
                "required": ["email"],
            },
            "request": {"url": "https://crm.example.com/customers?email={% $args.email %}"},
        }
    ],
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SaveAgentRequest(_Request):
    name: str = Field(min_length=1, max_length=200, examples=["Triage"])
    description: str = Field(default="", max_length=10_000)
    spec: AgentSpec = Field(examples=[_SPEC_EXAMPLE])


class UpdateAgentRequest(SaveAgentRequest):
    publish: bool = Field(default=True, description="Make the new version the live one.")


class PublishRequest(_Request):
    version: int = Field(ge=1)


class FeedbackRequest(_Request):
    rating: int = Field(ge=-1, le=5, description="-1 (wrong) to 5 (excellent).")
    correction: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CORRECTION_CHARS,
        description="What the agent should have done; recalled in similar later episodes.",
    )


class AgentOut(BaseModel):
    id: UUID
    name: str
    description: str
    maturity: Literal["STUDENT", "INTERN", "SUPERVISED", "AUTONOMOUS"]
    version: int = Field(description="The latest version.")
    live_version: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> AgentOut:
        return cls(**{**row, "version": row["latest_version"]})


class AgentDetailOut(AgentOut):
    spec: dict[str, Any] = Field(description="The live version's spec.")

    @classmethod
    def of(cls, row: dict[str, Any]) -> AgentDetailOut:
        return cls(**{**row, "version": row["latest_version"]})


class AgentListOut(BaseModel):
    items: list[AgentOut]
    next_offset: int | None


class VersionOut(BaseModel):
    version: int
    checksum: str
    created_by: UUID | None
    created_at: datetime


class VersionDetailOut(VersionOut):
    spec: dict[str, Any]


class AuditEntryOut(BaseModel):
    id: int
    agent_version: int | None
    episode_id: UUID | None
    event: str
    detail: dict[str, Any]
    actor: str
    created_at: datetime


class AuditOut(BaseModel):
    items: list[AuditEntryOut]
    next_before: int | None = Field(description="Pass as ?before= for the older entries.")


class EpisodeOut(BaseModel):
    id: UUID
    agent_id: UUID
    agent_version: int
    kind: str
    run_id: UUID | None
    node_run_id: UUID | None
    thread_id: UUID | None
    parent_episode_id: UUID | None
    input: Any
    tool_calls: list[Any]
    decisions: list[Any]
    recalled: list[Any]
    outcome: str
    output: Any
    error: str | None
    usage: dict[str, Any]
    cost_usd: float
    duration_ms: int | None
    feedback_rating: int | None
    feedback_correction: str | None
    feedback_at: datetime | None
    summary: str | None
    created_at: datetime
    finished_at: datetime | None


class EpisodeListOut(BaseModel):
    items: list[EpisodeOut]
    next_offset: int | None


@router.post("", status_code=201, response_model=AgentDetailOut)
def handle_create_agent(body: SaveAgentRequest, db: DatabaseDep, principal: Writer) -> Any:
    row = registry.create_agent(
        db,
        principal.workspace_id,
        name=body.name,
        description=body.description,
        spec=body.spec,
        created_by=principal.user_id,
    )
    return AgentDetailOut.of(registry.get_agent(db, principal.workspace_id, row["id"]))


@router.get("", response_model=AgentListOut)
def handle_list_agents(
    db: DatabaseDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AgentListOut:
    rows = registry.list_agents(db, principal.workspace_id, limit=limit + 1, offset=offset)
    return AgentListOut(
        items=[AgentOut.of(r) for r in rows[:limit]],
        next_offset=offset + limit if len(rows) > limit else None,
    )


@router.get("/{agent_id}", response_model=AgentDetailOut)
def handle_get_agent(agent_id: UUID, db: DatabaseDep, principal: Reader) -> AgentDetailOut:
    return AgentDetailOut.of(registry.get_agent(db, principal.workspace_id, agent_id))


@router.get(
    "/{agent_id}/markdown",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}}}},
)
def handle_agent_markdown(
    agent_id: UUID,
    db: DatabaseDep,
    principal: Reader,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """The spec as people read it (the live version unless ``version`` is given)."""
    agent = registry.load(db, principal.workspace_id, agent_id, version)
    row = registry.get_agent(db, principal.workspace_id, agent_id)
    description = row["description"]
    text = render_markdown(agent.name, description, agent.version, agent.maturity, agent.spec)
    return Response(text, media_type="text/markdown; charset=utf-8")


@router.put("/{agent_id}", response_model=AgentDetailOut)
def handle_update_agent(
    agent_id: UUID, body: UpdateAgentRequest, db: DatabaseDep, principal: Writer
) -> AgentDetailOut:
    registry.save_version(
        db,
        principal.workspace_id,
        agent_id,
        name=body.name,
        description=body.description,
        spec=body.spec,
        created_by=principal.user_id,
        publish=body.publish,
    )
    return AgentDetailOut.of(registry.get_agent(db, principal.workspace_id, agent_id))


@router.delete("/{agent_id}", status_code=204)
def handle_delete_agent(agent_id: UUID, db: DatabaseDep, principal: Writer) -> Response:
    registry.delete_agent(db, principal.workspace_id, agent_id)
    return Response(status_code=204)


@router.get("/{agent_id}/versions", response_model=list[VersionOut])
def handle_list_versions(agent_id: UUID, db: DatabaseDep, principal: Reader) -> list[VersionOut]:
    return [VersionOut(**r) for r in registry.list_versions(db, principal.workspace_id, agent_id)]


@router.get("/{agent_id}/versions/{version}", response_model=VersionDetailOut)
def handle_get_version(
    agent_id: UUID, version: Annotated[int, Path(ge=1)], db: DatabaseDep, principal: Reader
) -> VersionDetailOut:
    row = registry.get_version(db, principal.workspace_id, agent_id, version)
    return VersionDetailOut(**{k: v for k, v in row.items() if k != "agent_id"})


@router.post("/{agent_id}/publish", response_model=AgentDetailOut)
def handle_publish(
    agent_id: UUID, body: PublishRequest, db: DatabaseDep, principal: Writer
) -> AgentDetailOut:
    registry.publish(db, principal.workspace_id, agent_id, body.version, actor=_actor(principal))
    return AgentDetailOut.of(registry.get_agent(db, principal.workspace_id, agent_id))


@router.get("/{agent_id}/audit", response_model=AuditOut)
def handle_audit(
    agent_id: UUID,
    db: DatabaseDep,
    principal: Reader,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditOut:
    """Governance decisions, publications and promotions, newest first."""
    rows = registry.audit_log(db, principal.workspace_id, agent_id, before=before, limit=limit + 1)
    return AuditOut(
        items=[AuditEntryOut(**r) for r in rows[:limit]],
        next_before=rows[limit - 1]["id"] if len(rows) > limit else None,
    )


@router.get("/{agent_id}/episodes", response_model=EpisodeListOut)
def handle_list_episodes(
    agent_id: UUID,
    db: DatabaseDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> EpisodeListOut:
    rows = episodes.list_episodes(
        db, principal.workspace_id, agent_id, limit=limit + 1, offset=offset
    )
    return EpisodeListOut(
        items=[EpisodeOut(**r) for r in rows[:limit]],
        next_offset=offset + limit if len(rows) > limit else None,
    )


@episode_router.get("/{episode_id}", response_model=EpisodeOut)
def handle_get_episode(episode_id: UUID, db: DatabaseDep, principal: Reader) -> EpisodeOut:
    return EpisodeOut(**episodes.get_episode(db, principal.workspace_id, episode_id))


@episode_router.post("/{episode_id}/feedback", response_model=EpisodeOut)
def handle_feedback(
    episode_id: UUID, body: FeedbackRequest, db: DatabaseDep, principal: Writer
) -> EpisodeOut:
    row = episodes.give_feedback(
        db, principal.workspace_id, episode_id, body.rating, body.correction
    )
    return EpisodeOut(**row)


def _actor(principal: Principal) -> str:
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    return f"api_key:{principal.key_id}" if principal.key_id else "system"
