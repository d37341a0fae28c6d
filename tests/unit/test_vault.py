"""The vault: envelope encryption bound to its row, a master key kept private, typed data."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from loom.config import Settings
from loom.errors import ConfigError, ValidationFailed
from loom.secrets.keyring import CredentialUnreadable, LocalKeyring, master_key_path, open_keyring
from loom.secrets.types import MODELS, CredentialType, Smtp, parse_data
from loom.secrets.vault import Binding, Sealed, Vault

CANARY = "canary-7f3a9c1e-do-not-leak"
PLAINTEXT = f'{{"token":"{CANARY}"}}'.encode()


@pytest.fixture
def vault() -> Vault:
    return Vault(LocalKeyring(os.urandom(32)))


@pytest.fixture
def binding() -> Binding:
    return Binding(uuid.uuid4(), uuid.uuid4(), "bearer_token")


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def _with(sealed: Sealed, part: str, value: bytes) -> Sealed:
    changes: dict[str, Any] = {part: value}
    return replace(sealed, **changes)


def _refuses(vault: Vault, sealed: Sealed, binding: Binding) -> str:
    with pytest.raises(CredentialUnreadable) as caught:
        vault.open(sealed, binding)
    text = f"{caught.value} {caught.value.solution} {caught.value!r}"
    assert CANARY not in text
    return text


# -- envelope encryption -------------------------------------------------------------------


def test_round_trip(vault: Vault, binding: Binding) -> None:
    sealed = vault.seal(PLAINTEXT, binding)
    assert vault.open(sealed, binding) == PLAINTEXT
    assert sealed.key_id == vault.keyring.key_id
    assert len(sealed.nonce) == 12


def test_every_seal_uses_a_fresh_data_key_and_nonce(vault: Vault, binding: Binding) -> None:
    first, second = vault.seal(PLAINTEXT, binding), vault.seal(PLAINTEXT, binding)
    assert first.ciphertext != second.ciphertext
    assert first.nonce != second.nonce
    assert first.wrapped_key != second.wrapped_key
    for part in (first.ciphertext, first.nonce, first.wrapped_key):
        assert CANARY.encode() not in part


@pytest.mark.parametrize("part", ["ciphertext", "nonce", "wrapped_key"])
@pytest.mark.parametrize("where", ["first", "last"])
def test_a_tampered_part_is_refused_without_plaintext(
    vault: Vault, binding: Binding, part: str, where: str
) -> None:
    sealed = vault.seal(PLAINTEXT, binding)
    value: bytes = getattr(sealed, part)
    tampered = _with(sealed, part, _flip(value, 0 if where == "first" else len(value) - 1))
    message = _refuses(vault, tampered, binding)
    assert "altered" in message


def test_truncated_parts_are_refused(vault: Vault, binding: Binding) -> None:
    sealed = vault.seal(PLAINTEXT, binding)
    for part in ("ciphertext", "nonce", "wrapped_key"):
        _refuses(vault, _with(sealed, part, getattr(sealed, part)[:5]), binding)


@pytest.mark.parametrize(
    "moved",
    [
        lambda b: replace(b, workspace_id=uuid.uuid4()),
        lambda b: replace(b, credential_id=uuid.uuid4()),
        lambda b: replace(b, credential_type="basic"),
    ],
    ids=["other workspace", "other id", "other type"],
)
def test_a_row_moved_to_another_workspace_id_or_type_is_refused(
    vault: Vault, binding: Binding, moved: object
) -> None:
    sealed = vault.seal(PLAINTEXT, binding)
    _refuses(vault, sealed, moved(binding))  # type: ignore[operator]


def test_the_ciphertext_of_another_credential_is_refused(vault: Vault, binding: Binding) -> None:
    other = Binding(binding.workspace_id, uuid.uuid4(), binding.credential_type)
    theirs = vault.seal(b'{"token":"theirs"}', other)
    ours = vault.seal(PLAINTEXT, binding)
    _refuses(vault, replace(ours, ciphertext=theirs.ciphertext, nonce=theirs.nonce), binding)


def test_another_master_key_is_named_not_guessed(vault: Vault, binding: Binding) -> None:
    sealed = vault.seal(PLAINTEXT, binding)
    stranger = Vault(LocalKeyring(os.urandom(32)))
    message = _refuses(stranger, sealed, binding)
    assert sealed.key_id in message and stranger.keyring.key_id in message
    # Even claiming the stranger's key id, the wrapped key does not open.
    _refuses(stranger, replace(sealed, key_id=stranger.keyring.key_id), binding)


def test_reprs_carry_no_key_material(vault: Vault) -> None:
    key = os.urandom(32)
    keyring = LocalKeyring(key)
    for text in (repr(keyring), repr(Vault(keyring)), repr(vault)):
        assert key.hex() not in text and "local:" in text


# -- master key file -----------------------------------------------------------------------


def test_the_master_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "home" / "master.key"
    previous = os.umask(0)  # even a permissive umask must not widen it
    try:
        first = LocalKeyring.from_file(path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_bytes()
    assert len(key) == 32
    assert first.key_id == "local:" + hashlib.sha256(key).hexdigest()[:16]
    assert LocalKeyring.from_file(path).key_id == first.key_id
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temporary left


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        ids.append(LocalKeyring.from_file(path).key_id)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(os.urandom(32))
    path.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        LocalKeyring.from_file(path)
    assert f"{mode:04o}" in caught.value.message
    assert f"chmod 600 {path}" in caught.value.solution


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_a_key_file_of_the_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(b"k" * size)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=f"holds {size} bytes, not 32"):
        LocalKeyring.from_file(path)


def test_the_key_file_defaults_to_loom_home(tmp_path: Path) -> None:
    assert master_key_path(Settings(home=tmp_path)) == tmp_path / "master.key"
    chosen = tmp_path / "elsewhere.key"
    assert master_key_path(Settings(home=tmp_path, master_key_file=chosen)) == chosen


def test_a_kms_key_replaces_the_key_file(tmp_path: Path) -> None:
    keyring = open_keyring(tmp_path / "master.key", "arn:aws:kms:eu-west-1:123456789012:key/x")
    assert keyring.key_id == "kms:arn:aws:kms:eu-west-1:123456789012:key/x"
    assert not (tmp_path / "master.key").exists()


# -- credential types ----------------------------------------------------------------------


def test_every_type_parses_and_reveals_only_on_request() -> None:
    samples = {
        CredentialType.BEARER_TOKEN: {"token": CANARY},
        CredentialType.BASIC: {"username": "ada", "password": CANARY},
        CredentialType.API_KEY: {"value": CANARY},
        CredentialType.OAUTH2_CLIENT: {
            "token_url": "https://auth.example.com/token",
            "client_id": "loom",
            "client_secret": CANARY,
            "scope": "read",
        },
        CredentialType.SMTP: {"host": "smtp.example.com", "port": 587, "password": CANARY},
        CredentialType.SLACK_BOT: {"token": CANARY},
        CredentialType.GITHUB_TOKEN: {"token": CANARY},
        CredentialType.NOTION_TOKEN: {"token": CANARY},
        CredentialType.WEBHOOK_SECRET: {"secret": CANARY},
        CredentialType.LLM_API_KEY: {"provider": "openai", "api_key": CANARY},
    }
    assert set(samples) == set(MODELS)
    for credential_type, data in samples.items():
        model = parse_data(credential_type, data)
        assert CANARY not in repr(model) and CANARY not in str(model)
        assert CANARY not in model.model_dump_json()
        assert CANARY in model.reveal().values()
        assert MODELS[credential_type].model_validate(model.reveal()) == model


def test_defaults_and_field_names() -> None:
    smtp = parse_data(CredentialType.SMTP, {"host": "mail", "port": 25})
    assert isinstance(smtp, Smtp) and smtp.starttls is True
    assert smtp.field_names() == ["host", "port", "starttls"]
    api_key = parse_data(CredentialType.API_KEY, {"value": "v"})
    assert api_key.reveal() == {"header": "X-API-Key", "value": "v"}
    assert isinstance(api_key.model_dump()["value"], SecretStr)


def test_validation_errors_name_paths_but_never_values() -> None:
    cases = [
        (CredentialType.BASIC, {"username": "ada", "password": CANARY, "pin": CANARY}),
        (CredentialType.OAUTH2_CLIENT, {"token_url": f"ftp://{CANARY}", "client_id": "c"}),
        (CredentialType.SMTP, {"host": "mail", "port": CANARY, "password": CANARY}),
        (CredentialType.API_KEY, {"header": f"bad {CANARY}", "value": CANARY}),
        (CredentialType.BEARER_TOKEN, CANARY),
        (CredentialType.BEARER_TOKEN, {"token": [CANARY]}),
    ]
    expected_paths = [
        {"data.pin"},
        {"data.token_url", "data.client_secret"},
        {"data.port"},
        {"data.header"},
        {"data"},
        {"data.token"},
    ]
    for (credential_type, data), paths in zip(cases, expected_paths, strict=True):
        with pytest.raises(ValidationFailed) as caught:
            parse_data(credential_type, data)
        error = caught.value
        assert {problem["path"] for problem in error.details} == paths
        assert all(problem["message"] for problem in error.details)
        everything = f"{error} {error.solution} {error.details} {error!r} {error.__cause__!r}"
        assert CANARY not in everything
        assert error.__cause__ is None and error.__suppress_context__
