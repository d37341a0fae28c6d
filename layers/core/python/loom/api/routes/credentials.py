"""``/v1/credentials``: secrets for nodes to use. Written once, never read back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from loom.api.deps import DatabaseDep, SettingsDep, allow
from loom.auth.principal import Principal, Role
from loom.secrets import service
from loom.secrets.types import CredentialType
from loom.secrets.vault import Vault, vault_for

router = APIRouter(prefix="/v1/credentials", tags=["credentials"])


def get_vault(settings: SettingsDep) -> Vault:
    return vault_for(settings)


VaultDep = Annotated[Vault, Depends(get_vault)]
Reader = Annotated[Principal, allow(Role.VIEWER, "credentials:read")]
Writer = Annotated[Principal, allow(Role.EDITOR, "credentials:write")]


class CreateCredentialRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    type: CredentialType
    data: dict[str, Any] = Field(
        description="The credential's fields for its type; secret fields are never returned.",
        examples=[{"token": "…"}],
    )


class CredentialOut(BaseModel):
    id: UUID
    name: str
    type: CredentialType
    fields: list[str] = Field(description="Names of the fields the credential holds.")
    created_at: datetime
    updated_at: datetime


def _out(info: service.CredentialInfo) -> CredentialOut:
    return CredentialOut.model_validate(info, from_attributes=True)


@router.post("", status_code=201, response_model=CredentialOut)
def handle_create_credential(
    body: CreateCredentialRequest, db: DatabaseDep, vault: VaultDep, principal: Writer
) -> CredentialOut:
    info = service.create_credential(
        db,
        vault,
        workspace_id=principal.workspace_id,
        name=body.name,
        credential_type=body.type,
        data=body.data,
        created_by=principal.user_id,
    )
    return _out(info)


@router.get("", response_model=list[CredentialOut])
def handle_list_credentials(db: DatabaseDep, principal: Reader) -> list[CredentialOut]:
    return [_out(info) for info in service.list_credentials(db, principal.workspace_id)]


@router.get("/{credential_id}", response_model=CredentialOut)
def handle_get_credential(credential_id: UUID, db: DatabaseDep, principal: Reader) -> CredentialOut:
    return _out(service.get_credential(db, principal.workspace_id, credential_id))


@router.delete("/{credential_id}", status_code=204)
def handle_delete_credential(credential_id: UUID, db: DatabaseDep, principal: Writer) -> Response:
    service.delete_credential(db, principal.workspace_id, credential_id)
    return Response(status_code=204)
