"""AES-256-GCM envelope encryption of credentials.

Each credential gets a fresh random data key, wrapped by the keyring; the row stores the
ciphertext, its nonce, the wrapped key and the master key's id. The associated data binds
the ciphertext (and the wrapped key) to the credential's workspace, id and type, so a row
copied to another workspace or id, or retyped, does not open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from loom.config import Settings
from loom.secrets.keyring import (
    NONCE_BYTES,
    CredentialUnreadable,
    Keyring,
    encode_context,
    master_key_path,
    open_keyring,
)


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes
    nonce: bytes
    wrapped_key: bytes
    key_id: str


@dataclass(frozen=True)
class Binding:
    """What a sealed credential belongs to; part of its associated data."""

    workspace_id: UUID
    credential_id: UUID
    credential_type: str

    def context(self) -> dict[str, str]:
        return {
            "workspace_id": str(self.workspace_id),
            "credential_id": str(self.credential_id),
            "type": self.credential_type,
        }


class Vault:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def __repr__(self) -> str:
        return f"Vault(key_id={self.keyring.key_id!r})"

    def seal(self, plaintext: bytes, binding: Binding) -> Sealed:
        context = binding.context()
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, encode_context(context))
        return Sealed(
            ciphertext=ciphertext,
            nonce=nonce,
            wrapped_key=self.keyring.wrap(data_key, context),
            key_id=self.keyring.key_id,
        )

    def open(self, sealed: Sealed, binding: Binding) -> bytes:
        context = binding.context()
        data_key = self.keyring.unwrap(sealed.wrapped_key, sealed.key_id, context)
        try:
            return AESGCM(data_key).decrypt(
                sealed.nonce, sealed.ciphertext, encode_context(context)
            )
        except (InvalidTag, ValueError):
            raise CredentialUnreadable(
                f"Credential {binding.credential_id} does not decrypt: its ciphertext or nonce "
                "was altered, or the row was copied from another credential.",
                solution="Delete the credential and create it again.",
            ) from None


def vault_for(settings: Settings) -> Vault:
    """The process's vault for these settings; the master key is read once."""
    return _vault(master_key_path(settings), settings.kms_key_id)


@lru_cache(maxsize=4)
def _vault(master_key_file: Path, kms_key_id: str | None) -> Vault:
    return Vault(open_keyring(master_key_file, kms_key_id))
