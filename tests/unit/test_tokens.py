"""Credentials without a database: access tokens, the signing key, passwords, key format."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from loom.auth import passwords, tokens
from loom.auth.api_keys import generate_key, parse_key
from loom.auth.principal import Unauthorized
from loom.config import Settings
from loom.errors import ConfigError
from tests.utils.api import JWT_SECRET, test_settings

USER = uuid.uuid4()
WORKSPACE = uuid.uuid4()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return test_settings(tmp_path)


def _claims(settings: Settings, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(USER),
        "wid": str(WORKSPACE),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
        "jti": "j",
        "typ": "access",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _refused(token: str, settings: Settings) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        tokens.decode_access_token(token, settings)
    return caught.value


def test_an_issued_token_decodes_to_its_user_and_workspace(settings: Settings) -> None:
    token = tokens.issue_access_token(settings, user_id=USER, workspace_id=WORKSPACE)
    claims = tokens.decode_access_token(token, settings)
    assert (claims.user_id, claims.workspace_id) == (USER, WORKSPACE)
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["exp"] - raw["iat"] == settings.access_token_ttl_seconds
    assert raw["typ"] == "access" and raw["jti"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_alg_none_is_refused(settings: Settings) -> None:
    unsigned = jwt.encode(_claims(settings), "", algorithm="none")
    assert _refused(unsigned, settings).message == "The access token is invalid."


def test_another_key_is_refused(settings: Settings) -> None:
    forged = jwt.encode(_claims(settings), "another-secret-" + "x" * 32, algorithm="HS256")
    _refused(forged, settings)


def test_an_asymmetric_algorithm_is_refused(settings: Settings) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _refused(jwt.encode(_claims(settings), key, algorithm="RS256"), settings)


def test_an_expired_token_says_so(settings: Settings) -> None:
    old = tokens.issue_access_token(
        settings, user_id=USER, workspace_id=WORKSPACE, now=time.time() - 3600
    )
    error = _refused(old, settings)
    assert error.message == "The access token has expired."
    assert "/v1/auth/refresh" in error.solution


def test_a_token_checked_before_still_expires_on_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signatures are checked once per token; expiry on every use."""
    started = time.time()
    ttl = settings.access_token_ttl_seconds
    token = tokens.issue_access_token(
        settings, user_id=USER, workspace_id=WORKSPACE, now=started - ttl + 60
    )
    assert tokens.decode_access_token(token, settings).user_id == USER
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: started + 120))
    assert _refused(token, settings).message == "The access token has expired."


def test_a_token_is_checked_again_under_another_key(tmp_path: Path) -> None:
    signed = test_settings(tmp_path)
    token = tokens.issue_access_token(signed, user_id=USER, workspace_id=WORKSPACE)
    assert tokens.decode_access_token(token, signed).workspace_id == WORKSPACE
    rotated = signed.model_copy(update={"jwt_secret": SecretStr("rotated-" + "k" * 32)})
    assert _refused(token, rotated).message == "The access token is invalid."


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "someone-else"},
        {"iss": "someone-else"},
        {"wid": None},
        {"sub": None},
        {"iat": None},
        {"exp": None},
        {"exp": "later"},
        {"typ": "refresh"},
        {"typ": None},
        {"wid": "not-a-uuid"},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_wrong_or_missing_claims_are_refused(settings: Settings, changes: dict[str, Any]) -> None:
    token = jwt.encode(_claims(settings, **changes), JWT_SECRET, algorithm="HS256")
    _refused(token, settings)


def test_a_tampered_payload_is_refused(settings: Settings) -> None:
    token = tokens.issue_access_token(settings, user_id=USER, workspace_id=WORKSPACE)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["wid"] = str(uuid.uuid4())
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    _refused(f"{header}.{forged}.{signature}", settings)


def test_a_short_secret_is_a_configuration_error(tmp_path: Path) -> None:
    short = test_settings(tmp_path, jwt_secret="too-short")
    with pytest.raises(ConfigError, match="LOOM_JWT_SECRET"):
        tokens.issue_access_token(short, user_id=USER, workspace_id=WORKSPACE)


def test_without_a_secret_a_private_key_file_is_made_once(tmp_path: Path) -> None:
    local = test_settings(tmp_path / "home", jwt_secret=None)
    token = tokens.issue_access_token(local, user_id=USER, workspace_id=WORKSPACE)
    key_file = tmp_path / "home" / "jwt.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    tokens._key_file.cache_clear()  # as a new process would
    assert tokens.decode_access_token(token, local).user_id == USER
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["jwt.key"]
    # Another home has another key.
    elsewhere = test_settings(tmp_path / "other", jwt_secret=None)
    _refused(token, elsewhere)


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "jwt.key"
    barrier = threading.Barrier(8)
    keys: list[bytes] = []

    def create() -> None:
        barrier.wait()
        tokens._create_key(path)
        keys.append(tokens._read_key(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys[0]) == tokens.MIN_KEY_BYTES


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwt.key"
    path.write_text(os.urandom(32).hex())
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users") as caught:
        tokens._read_key(path)
    assert caught.value.solution == f"Run `chmod 600 {path}`."


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwt.key"
    path.write_text("not hex")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="damaged"):
        tokens._read_key(path)


def test_passwords_hash_with_argon2id_and_verify() -> None:
    stored = passwords.hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert passwords.verify_password(stored, "correct horse battery staple")
    assert not passwords.verify_password(stored, "Correct horse battery staple")
    assert not passwords.verify_password("not a hash", "anything")
    assert not passwords.needs_rehash(stored)


def test_weaker_hashes_are_marked_for_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw-0123456789")
    assert passwords.verify_password(weak, "pw-0123456789")
    assert passwords.needs_rehash(weak)


def test_api_keys_have_the_documented_shape() -> None:
    key, prefix, secret = generate_key()
    assert key == f"loom_{prefix}_{secret}"
    assert len(prefix) == 8 and len(secret) == 40
    assert parse_key(key) == (prefix, secret)
    assert generate_key()[0] != key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "loom_",
        "loom_abcdefgh",
        "loom_abcdefgh_short",
        "loom_ABCDEFGH_" + "a" * 40,
        "loom_abcdefg_" + "a" * 41,
        "loom_abcdefgh_" + "a" * 39 + "-",
        "mool_abcdefgh_" + "a" * 40,
    ],
)
def test_malformed_api_keys_do_not_parse(key: str) -> None:
    assert parse_key(key) is None
