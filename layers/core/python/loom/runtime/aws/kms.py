"""The KMS keyring: data keys are wrapped by a KMS key, bound to the credential's
identity through the encryption context (the same binding the local keyring makes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loom.errors import LoomError
from loom.runtime.aws.clients import client, error_code
from loom.secrets.keyring import CredentialUnreadable

PREFIX = "kms:"
# KMS answers these when the ciphertext or its context does not match: the row was altered.
_UNREADABLE = {"InvalidCiphertextException", "IncorrectKeyException"}


class KmsUnavailable(LoomError):
    code = "kms_unavailable"
    status = 503
    retryable = True


class KmsKeyring:
    def __init__(self, key_id: str, kms: Any | None = None) -> None:
        self._key = key_id
        self._kms = kms

    def __repr__(self) -> str:
        return f"KmsKeyring(key_id={self.key_id!r})"

    @property
    def kms(self) -> Any:
        return self._kms or client("kms")

    @property
    def key_id(self) -> str:
        return PREFIX + self._key

    def wrap(self, data_key: bytes, context: Mapping[str, str]) -> bytes:
        try:
            reply = self.kms.encrypt(
                KeyId=self._key, Plaintext=data_key, EncryptionContext=dict(context)
            )
        except Exception as exc:
            raise _unavailable(exc) from None
        wrapped: bytes = reply["CiphertextBlob"]
        return wrapped

    def unwrap(self, wrapped: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        if not key_id.startswith(PREFIX):
            raise CredentialUnreadable(
                f"The credential was sealed with master key {key_id}, not with KMS.",
                solution="Create the credential again on this deployment.",
            )
        try:
            reply = self.kms.decrypt(
                CiphertextBlob=wrapped,
                KeyId=key_id.removeprefix(PREFIX),
                EncryptionContext=dict(context),
            )
        except Exception as exc:
            if error_code(exc) in _UNREADABLE:
                raise CredentialUnreadable(
                    "KMS refused the credential's wrapped key for this credential's identity: "
                    "the row was altered or copied.",
                    solution="Delete the credential and create it again.",
                ) from None
            raise _unavailable(exc) from None
        plaintext: bytes = reply["Plaintext"]
        return plaintext


def _unavailable(exc: Exception) -> KmsUnavailable:
    return KmsUnavailable(
        f"KMS did not answer: {error_code(exc) or type(exc).__name__}.",
        solution="Check the function's kms:Encrypt/kms:Decrypt grant on LOOM_KMS_KEY_ID, "
        "and retry.",
    )
