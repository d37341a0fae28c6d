"""``/v1/api-keys``: workspace keys for machines. Admins only; keys can't manage keys."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from loom.api.deps import CurrentPrincipal, DatabaseDep
from loom.api.routes.auth import Name, no_store
from loom.auth import api_keys
from loom.auth.principal import SCOPES

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


class CreateApiKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    scopes: list[str] = Field(
        min_length=1, max_length=len(SCOPES), examples=[["workflows:read", "runs:write"]]
    )
    expires_at: AwareDatetime | None = Field(default=None, description="None: never expires.")


class ApiKeyOut(BaseModel):
    id: UUID
    name: str
    prefix: str
    scopes: list[str]
    created_by: UUID | None
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The whole key. Shown once; Loom keeps only its hash.")


@router.post("", status_code=201, response_model=ApiKeyCreatedOut)
def handle_create_api_key(
    body: CreateApiKeyRequest, db: DatabaseDep, principal: CurrentPrincipal, response: Response
) -> ApiKeyCreatedOut:
    no_store(response)
    row, key = api_keys.create_api_key(
        db, principal, name=body.name, scopes=body.scopes, expires_at=body.expires_at
    )
    return ApiKeyCreatedOut.model_validate({**row, "key": key})


@router.get("", response_model=list[ApiKeyOut])
def handle_list_api_keys(db: DatabaseDep, principal: CurrentPrincipal) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(row) for row in api_keys.list_api_keys(db, principal)]


@router.delete("/{key_id}", status_code=204)
def handle_revoke_api_key(key_id: UUID, db: DatabaseDep, principal: CurrentPrincipal) -> Response:
    api_keys.revoke_api_key(db, principal, key_id)
    return Response(status_code=204)
