"""``/v1/workspaces``: the caller's workspaces, members and invitations.

``current`` is the workspace of the caller's credential; there is no route that names
another workspace by id, so ids of other workspaces' members or invitations are simply
not found here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from loom.api.deps import CurrentPrincipal, DatabaseDep, SettingsDep
from loom.api.routes.auth import EmailAddress, Name, OpaqueToken, TokenPairOut, no_store
from loom.auth import service, workspace_settings
from loom.auth.principal import Role

router = APIRouter(tags=["workspaces"])

RoleName = Literal["owner", "admin", "editor", "viewer"]
InvitedRole = Literal["admin", "editor", "viewer"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateWorkspaceRequest(_Request):
    name: Name


class ChangeRoleRequest(_Request):
    role: RoleName


class InviteRequest(_Request):
    email: EmailAddress
    role: InvitedRole


class AcceptInvitationRequest(_Request):
    token: OpaqueToken


class LlmBudget(_Request):
    monthly_usd: float | None = Field(
        ge=0,
        le=1e9,
        description="Most this workspace may spend on model calls per calendar month (UTC); "
        "a call that could cross it is refused before it is made. null removes the budget.",
        examples=[50.0],
    )
    warn_percent: int = Field(
        default=80,
        ge=1,
        le=100,
        description="Share of the budget at which calls start returning a warning.",
    )


class SettingsRequest(_Request):
    outbound_allowlist: (
        list[Annotated[str, StringConstraints(min_length=1, max_length=300)]] | None
    ) = Field(
        default=None,
        max_length=100,
        description="Internal hosts this workspace's nodes may call: host, host:port or "
        "[IPv6]:port. Metadata addresses stay refused. Omitted: unchanged.",
        examples=[["billing.internal:8443", "10.0.4.7"]],
    )
    llm_budget: LlmBudget | None = Field(
        default=None, description="The monthly model budget. Omitted: unchanged."
    )
    agent_policy: dict[str, dict[str, str]] | None = Field(
        default=None,
        description="Overrides of the governance policy: maturity level to risk class "
        "(read, write, external, spend) to verdict (allow, approve, deny). Replaces the "
        "stored overrides; {} restores the default. Omitted: unchanged.",
        examples=[{"INTERN": {"write": "allow"}}],
    )


class LlmBudgetOut(BaseModel):
    monthly_usd: float
    warn_percent: int = 80


class SettingsOut(BaseModel):
    outbound_allowlist: list[str]
    llm_budget: LlmBudgetOut | None = Field(default=None, description="Present when set.")
    agent_policy: dict[str, dict[str, str]] = Field(
        description="The governance policy in force: the default with this workspace's overrides."
    )


class WorkspaceOut(BaseModel):
    id: UUID
    name: str
    role: RoleName | None
    created_at: datetime


class WorkspaceCreatedOut(BaseModel):
    workspace: WorkspaceOut
    tokens: TokenPairOut


class MemberOut(BaseModel):
    user_id: UUID
    email: str
    display_name: str | None
    role: RoleName
    created_at: datetime


class InvitationOut(BaseModel):
    id: UUID
    email: str
    role: InvitedRole
    invited_by: UUID | None
    expires_at: datetime
    created_at: datetime


class InvitationCreatedOut(InvitationOut):
    token: str


@router.get("/v1/workspaces", response_model=list[WorkspaceOut])
def handle_list_workspaces(db: DatabaseDep, principal: CurrentPrincipal) -> list[WorkspaceOut]:
    found = service.list_workspaces(db, principal)
    return [WorkspaceOut.model_validate(w) for w in found]


@router.post("/v1/workspaces", status_code=201, response_model=WorkspaceCreatedOut)
def handle_create_workspace(
    body: CreateWorkspaceRequest,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: CurrentPrincipal,
    response: Response,
) -> WorkspaceCreatedOut:
    no_store(response)
    workspace, pair = service.create_workspace(db, settings, principal, name=body.name)
    return WorkspaceCreatedOut(
        workspace=WorkspaceOut.model_validate(workspace), tokens=TokenPairOut.of(pair)
    )


@router.get("/v1/workspaces/current", response_model=WorkspaceOut)
def handle_get_current_workspace(db: DatabaseDep, principal: CurrentPrincipal) -> WorkspaceOut:
    return WorkspaceOut.model_validate(service.current_workspace(db, principal))


@router.get(
    "/v1/workspaces/current/settings", response_model=SettingsOut, response_model_exclude_none=True
)
def handle_get_settings(db: DatabaseDep, principal: CurrentPrincipal) -> SettingsOut:
    return SettingsOut(**workspace_settings.get_settings(db, principal))


@router.put(
    "/v1/workspaces/current/settings", response_model=SettingsOut, response_model_exclude_none=True
)
def handle_put_settings(
    body: SettingsRequest, db: DatabaseDep, principal: CurrentPrincipal
) -> SettingsOut:
    changed = workspace_settings.update_settings(
        db,
        principal,
        outbound_allowlist=body.outbound_allowlist,
        llm_budget=body.llm_budget.model_dump() if body.llm_budget else None,
        agent_policy=body.agent_policy,
    )
    return SettingsOut(**changed)


@router.get("/v1/workspaces/current/members", response_model=list[MemberOut])
def handle_list_members(db: DatabaseDep, principal: CurrentPrincipal) -> list[MemberOut]:
    return [MemberOut.model_validate(m) for m in service.list_members(db, principal)]


@router.patch("/v1/workspaces/current/members/{user_id}", response_model=MemberOut)
def handle_change_member_role(
    user_id: UUID, body: ChangeRoleRequest, db: DatabaseDep, principal: CurrentPrincipal
) -> MemberOut:
    member = service.change_member_role(db, principal, user_id, Role.parse(body.role))
    return MemberOut.model_validate(member)


@router.delete("/v1/workspaces/current/members/{user_id}", status_code=204)
def handle_remove_member(user_id: UUID, db: DatabaseDep, principal: CurrentPrincipal) -> Response:
    service.remove_member(db, principal, user_id)
    return Response(status_code=204)


@router.post(
    "/v1/workspaces/current/invitations", status_code=201, response_model=InvitationCreatedOut
)
def handle_invite(
    body: InviteRequest, db: DatabaseDep, principal: CurrentPrincipal, response: Response
) -> InvitationCreatedOut:
    no_store(response)
    invitation, token = service.invite(db, principal, email=body.email, role=Role.parse(body.role))
    return InvitationCreatedOut.model_validate({**invitation, "token": token})


@router.get("/v1/workspaces/current/invitations", response_model=list[InvitationOut])
def handle_list_invitations(db: DatabaseDep, principal: CurrentPrincipal) -> list[InvitationOut]:
    return [InvitationOut.model_validate(i) for i in service.list_invitations(db, principal)]


@router.delete("/v1/workspaces/current/invitations/{invitation_id}", status_code=204)
def handle_revoke_invitation(
    invitation_id: UUID, db: DatabaseDep, principal: CurrentPrincipal
) -> Response:
    service.revoke_invitation(db, principal, invitation_id)
    return Response(status_code=204)


@router.post("/v1/invitations/accept", response_model=TokenPairOut)
def handle_accept_invitation(
    body: AcceptInvitationRequest,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: CurrentPrincipal,
    response: Response,
) -> TokenPairOut:
    no_store(response)
    return TokenPairOut.of(service.accept_invitation(db, settings, principal, body.token))
