"""Creating, listing, deleting and resolving credentials.

Replies carry names, types and field names. Only ``resolve`` returns secrets, as a typed
model whose secret fields are ``SecretStr``, for the node about to use them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from loom.config import get_settings
from loom.db import credentials as repo
from loom.db.database import Database
from loom.errors import NotFound
from loom.secrets.types import MODELS, CredentialData, CredentialType, parse_data
from loom.secrets.vault import Binding, Sealed, Vault, vault_for


@dataclass(frozen=True)
class CredentialInfo:
    id: UUID
    name: str
    type: CredentialType
    fields: list[str]
    created_at: datetime
    updated_at: datetime


def create_credential(
    db: Database,
    vault: Vault,
    *,
    workspace_id: UUID,
    name: str,
    credential_type: CredentialType,
    data: Any,
    created_by: UUID | None = None,
) -> CredentialInfo:
    parsed = parse_data(credential_type, data)
    credential_id = uuid4()
    plaintext = json.dumps(parsed.reveal(), separators=(",", ":")).encode()
    sealed = vault.seal(plaintext, Binding(workspace_id, credential_id, credential_type.value))
    with db.tenant(workspace_id) as conn:
        row = repo.insert_credential(
            conn,
            credential_id=credential_id,
            workspace_id=workspace_id,
            name=name,
            credential_type=credential_type.value,
            ciphertext=sealed.ciphertext,
            nonce=sealed.nonce,
            wrapped_key=sealed.wrapped_key,
            key_id=sealed.key_id,
            metadata={"fields": parsed.field_names()},
            created_by=created_by,
        )
    return _info(row)


def list_credentials(db: Database, workspace_id: UUID) -> list[CredentialInfo]:
    with db.tenant(workspace_id) as conn:
        return [_info(row) for row in repo.list_credentials(conn)]


def get_credential(db: Database, workspace_id: UUID, credential_id: UUID) -> CredentialInfo:
    with db.tenant(workspace_id) as conn:
        row = repo.get_credential(conn, credential_id)
    if row is None:
        raise _not_found(credential_id)
    return _info(row)


def delete_credential(db: Database, workspace_id: UUID, credential_id: UUID) -> None:
    with db.tenant(workspace_id) as conn:
        deleted = repo.delete_credential(conn, credential_id)
    if not deleted:
        raise _not_found(credential_id)


def resolve(
    db: Database, workspace_id: UUID, credential_id: UUID, *, vault: Vault | None = None
) -> CredentialData:
    """The credential with its secrets, decrypted in memory. ``vault`` defaults to the
    one the process settings name."""
    with db.tenant(workspace_id) as conn:
        row = repo.get_sealed(conn, credential_id)
    if row is None:
        raise _not_found(credential_id)
    sealed = Sealed(
        ciphertext=bytes(row["ciphertext"]),
        nonce=bytes(row["nonce"]),
        wrapped_key=bytes(row["wrapped_key"]),
        key_id=row["key_id"],
    )
    opened = (vault or vault_for(get_settings())).open(
        sealed, Binding(workspace_id, credential_id, row["type"])
    )
    return MODELS[CredentialType(row["type"])].model_validate_json(opened)


def _info(row: dict[str, Any]) -> CredentialInfo:
    return CredentialInfo(
        id=row["id"],
        name=row["name"],
        type=CredentialType(row["type"]),
        fields=list(row["metadata"].get("fields", [])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _not_found(credential_id: UUID) -> NotFound:
    return NotFound(
        f"Credential {credential_id} not found in this workspace.",
        solution="GET /v1/credentials lists this workspace's credentials.",
    )
