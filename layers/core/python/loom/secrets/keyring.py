"""Keyrings wrap the per-credential data keys: a local master key file, or (on AWS) KMS.

A wrapped key is bound to a context (workspace, credential, type), the way KMS binds an
encryption context, so a wrapped key copied to another row does not unwrap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from loom.config import Settings
from loom.errors import ConfigError, LoomError

KEY_BYTES = 32
NONCE_BYTES = 12


class CredentialUnreadable(LoomError):
    """A sealed credential does not open: wrong master key, or its row was altered or copied."""

    code = "credential_unreadable"
    status = 500
    retryable = False


class Keyring(Protocol):
    @property
    def key_id(self) -> str:
        """Names the master key new data keys are wrapped with; stored beside each row."""
        ...

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> bytes: ...

    def unwrap(self, wrapped: bytes, key_id: str, context: Mapping[str, str]) -> bytes: ...


def encode_context(context: Mapping[str, str]) -> bytes:
    """One canonical byte string per context, whatever the mapping's order."""
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


class LocalKeyring:
    """A 32-byte master key in a file readable by its owner only."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(master_key)
        self._key_id = "local:" + hashlib.sha256(master_key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"LocalKeyring(key_id={self._key_id!r})"

    @classmethod
    def from_file(cls, path: Path) -> LocalKeyring:
        """Load the master key, creating it first if there is none."""
        if not path.exists():
            _create_key_file(path)
        return cls(_read_key_file(path))

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, encode_context(context))

    def unwrap(self, wrapped: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        if key_id != self._key_id:
            raise CredentialUnreadable(
                f"The credential was sealed with master key {key_id}, but this vault holds "
                f"{self._key_id}.",
                solution="Start Loom with the master key file the credential was created "
                "with (LOOM_MASTER_KEY_FILE), or create the credential again.",
            )
        nonce, sealed = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, sealed, encode_context(context))
        except (InvalidTag, ValueError):
            raise CredentialUnreadable(
                "The credential's wrapped key does not open with this master key and this "
                "credential's identity: the row was altered or copied.",
                solution="Delete the credential and create it again.",
            ) from None


def master_key_path(settings: Settings) -> Path:
    return settings.master_key_file or settings.home / "master.key"


def open_keyring(master_key_file: Path, kms_key_id: str | None) -> Keyring:
    """KMS when ``LOOM_KMS_KEY_ID`` is set (on AWS), else the local master key file."""
    if kms_key_id is not None:
        from loom.runtime.aws.kms import KmsKeyring

        return KmsKeyring(kms_key_id)
    return LocalKeyring.from_file(master_key_file)


def _create_key_file(path: Path) -> None:
    """Write a new key under a temporary name (0600 from its first byte), then link it
    into place: the link fails if another process got there first, and no reader ever
    sees a half-written key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its key
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _read_key_file(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"The master key file {path} has mode {mode:04o}: others can read or change it.",
                solution=f"Restrict it to its owner (`chmod 600 {path}`); if others may have "
                "read it, rotate every credential.",
            )
        if info.st_size != KEY_BYTES:
            raise ConfigError(
                f"The master key file {path} holds {info.st_size} bytes, not {KEY_BYTES}.",
                solution="Restore the key file from a backup: credentials sealed with it "
                "cannot be read without it. Delete it only if no credential uses it yet.",
            )
        return source.read(KEY_BYTES)
