"""Authentication, workspaces, members, invitations and API keys over real HTTP.

Everything runs against the session's embedded Postgres through the API on 127.0.0.1;
OIDC tokens are verified against a JWKS served by a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter

from loom.api.app import ALL_ROUTERS
from loom.api.deps import allow
from loom.auth.principal import Principal, Role
from loom.config import Settings
from loom.db import Database
from tests.utils.api import (
    JWT_SECRET,
    PASSWORD,
    Session,
    join_workspace,
    new_email,
    session_of,
    signup,
    start_api_server,
    test_settings,
)

OIDC_ISSUER = "https://idp.example.test/"
OIDC_AUDIENCE = "loom-oidc-client"

probe = APIRouter(prefix="/v1/test-probe")


@probe.get("/write")
def probe_write(
    principal: Annotated[Principal, allow(Role.EDITOR, "workflows:write")],
) -> dict[str, str]:
    return {"kind": principal.kind}


# Fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """The identity provider's JWKS, served over real HTTP on 127.0.0.1."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def custom_settings(tmp_path_factory: pytest.TempPathFactory, jwks_url: str) -> Settings:
    return test_settings(
        tmp_path_factory.mktemp("oidc"),
        oidc_issuer=OIDC_ISSUER,
        oidc_audience=OIDC_AUDIENCE,
        oidc_jwks_url=jwks_url,
    )


@pytest.fixture(scope="module")
def custom(database: Database, custom_settings: Settings) -> Iterator[httpx.Client]:
    """The API with OIDC enabled and a probe route guarded by ``allow``."""
    with (
        start_api_server(database, custom_settings, routers=(*ALL_ROUTERS, probe)) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        yield http


@pytest.fixture
def owner(client: httpx.Client) -> Session:
    return signup(client)


# Helpers ----------------------------------------------------------------------------


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) >= {"code", "message", "solution", "request_id"}
    return error


def _new_key(
    client: httpx.Client, admin: Session, scopes: list[str], **extra: Any
) -> dict[str, Any]:
    response = client.post(
        "/v1/api-keys", json={"name": "ci", "scopes": scopes, **extra}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _me(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return client.get("/v1/auth/me", headers=headers)


# Sign-up, sign-in, sessions ---------------------------------------------------------


def test_signup_returns_a_token_pair_for_a_new_workspace(client: httpx.Client) -> None:
    email = new_email()
    response = client.post(
        "/v1/auth/signup",
        json={"email": f"  {email.upper()} ", "password": PASSWORD, "workspace_name": " Acme "},
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "user_id",
        "workspace_id",
    }
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    me = _me(client, _bearer(body["access_token"])).json()
    assert me == {
        "kind": "user",
        "workspace_id": body["workspace_id"],
        "user_id": body["user_id"],
        "email": email,
        "role": "owner",
        "key_id": None,
        "scopes": [],
    }
    current = client.get("/v1/workspaces/current", headers=_bearer(body["access_token"])).json()
    assert (current["id"], current["name"], current["role"]) == (
        body["workspace_id"],
        "Acme",
        "owner",
    )


def test_a_taken_email_is_409_whatever_its_case(client: httpx.Client, owner: Session) -> None:
    again = client.post(
        "/v1/auth/signup",
        json={"email": owner.email.upper(), "password": PASSWORD, "workspace_name": "x"},
    )
    assert _error(again, 409)["code"] == "email_taken"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD, "workspace_name": "w"},
        {"email": new_email(), "password": "short", "workspace_name": "w"},
        {"email": new_email(), "password": "x" * 1025, "workspace_name": "w"},
        {"email": new_email(), "password": PASSWORD, "workspace_name": ""},
        {"email": new_email(), "password": PASSWORD, "workspace_name": "w" * 201},
        {"email": "a" * 320 + "@example.com", "password": PASSWORD, "workspace_name": "w"},
        {"email": new_email(), "password": PASSWORD, "workspace_name": "w", "role": "owner"},
    ],
    ids=["email", "short", "long", "empty-name", "long-name", "long-email", "extra-field"],
)
def test_signup_refuses_invalid_fields(client: httpx.Client, body: dict[str, Any]) -> None:
    assert _error(client.post("/v1/auth/signup", json=body), 422)["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/auth/signup",
            {"email": "a\x00b@example.com", "password": PASSWORD, "workspace_name": "w"},
        ),
        (
            "/v1/auth/signup",
            {"email": new_email(), "password": PASSWORD, "workspace_name": "a\x00b"},
        ),
        (
            "/v1/auth/signup",
            {"email": new_email(), "password": "pw-\ud800-0123456", "workspace_name": "w"},
        ),
        ("/v1/auth/login", {"email": "\ud800@example.com", "password": PASSWORD}),
        ("/v1/auth/refresh", {"refresh_token": "\ud800"}),
        ("/v1/workspaces", {"name": "\ud800"}),
        ("/v1/api-keys", {"name": "a\x07", "scopes": ["runs:read"]}),
    ],
    ids=[
        "nul-email",
        "nul-name",
        "surrogate-password",
        "surrogate-email",
        "surrogate-token",
        "surrogate-workspace",
        "bell-key-name",
    ],
)
def test_text_no_column_or_hash_can_take_is_422(
    client: httpx.Client, owner: Session, path: str, body: dict[str, Any]
) -> None:
    """NUL and lone surrogates reach handlers as str (JSON escapes); never a 500."""
    response = client.post(
        path,
        content=json.dumps(body),  # ASCII-only, so lone surrogates travel as \ud800 escapes
        headers={**owner.headers, "Content-Type": "application/json"},
    )
    assert _error(response, 422)["code"] == "invalid_request"


def test_credentials_are_stored_only_as_hashes(
    client: httpx.Client, owner: Session, database: Database
) -> None:
    key = _new_key(client, owner, ["runs:read"])
    with database.system() as conn:
        user = conn.execute("SELECT * FROM users WHERE id = %s", (owner.user_id,)).fetchone()
        sessions = conn.execute(
            "SELECT * FROM refresh_tokens WHERE user_id = %s", (owner.user_id,)
        ).fetchall()
    with database.tenant(owner.workspace_id) as conn:
        stored_key = conn.execute("SELECT * FROM api_keys WHERE id = %s", (key["id"],)).fetchone()
    assert user is not None and stored_key is not None
    assert user["password_hash"].startswith("$argon2id$v=19$")
    assert PASSWORD not in json.dumps(user, default=str)
    assert [s["token_hash"] for s in sessions] == [
        hashlib.sha256(owner.refresh_token.encode()).hexdigest()
    ]
    assert owner.refresh_token not in json.dumps(sessions, default=str)
    secret = key["key"].split("_", 2)[2]
    assert stored_key["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps(stored_key, default=str)


def test_login_and_its_one_generic_refusal(client: httpx.Client, owner: Session) -> None:
    ok = client.post(
        "/v1/auth/login", json={"email": f" {owner.email.upper()}", "password": PASSWORD}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["workspace_id"] == owner.workspace_id
    assert ok.json()["user_id"] == owner.user_id
    assert _me(client, _bearer(ok.json()["access_token"])).status_code == 200

    wrong_password = client.post(
        "/v1/auth/login", json={"email": owner.email, "password": PASSWORD + "!"}
    )
    unknown_email = client.post("/v1/auth/login", json={"email": new_email(), "password": PASSWORD})
    first, second = _error(wrong_password, 401), _error(unknown_email, 401)
    assert first["message"] == second["message"] == "The email or password is incorrect."
    assert first["code"] == second["code"] == "unauthorized"


def test_login_to_a_named_workspace_only_if_a_member(client: httpx.Client, owner: Session) -> None:
    stranger = signup(client)
    second = client.post("/v1/workspaces", json={"name": "second"}, headers=owner.headers).json()[
        "workspace"
    ]
    into_second = client.post(
        "/v1/auth/login",
        json={"email": owner.email, "password": PASSWORD, "workspace_id": second["id"]},
    )
    assert into_second.status_code == 200 and into_second.json()["workspace_id"] == second["id"]
    into_strangers = client.post(
        "/v1/auth/login",
        json={
            "email": owner.email,
            "password": PASSWORD,
            "workspace_id": stranger.workspace_id,
        },
    )
    _error(into_strangers, 404)


def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.Client, owner: Session, database: Database
) -> None:
    other_session = client.post(
        "/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    ).json()
    first = client.post("/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert first.status_code == 200, first.text
    successor = first.json()
    assert successor["refresh_token"] != owner.refresh_token
    assert successor["workspace_id"] == owner.workspace_id
    assert _me(client, _bearer(successor["access_token"])).status_code == 200

    replay = client.post("/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert "already used" in _error(replay, 401)["message"]
    # The thief's replay also ended the legitimate holder's session...
    _error(client.post("/v1/auth/refresh", json={"refresh_token": successor["refresh_token"]}), 401)
    with database.system() as conn:
        family = conn.execute(
            "SELECT revoked_at FROM refresh_tokens WHERE family_id = ("
            "  SELECT family_id FROM refresh_tokens WHERE token_hash = %s)",
            (hashlib.sha256(owner.refresh_token.encode()).hexdigest(),),
        ).fetchall()
    assert len(family) == 2 and all(row["revoked_at"] is not None for row in family)
    # ...and no other session.
    other = client.post("/v1/auth/refresh", json={"refresh_token": other_session["refresh_token"]})
    assert other.status_code == 200


def test_logout_ends_the_session(client: httpx.Client, owner: Session) -> None:
    out = client.post("/v1/auth/logout", json={"refresh_token": owner.refresh_token})
    assert out.status_code == 204
    _error(client.post("/v1/auth/refresh", json={"refresh_token": owner.refresh_token}), 401)
    unknown = client.post("/v1/auth/logout", json={"refresh_token": "never-issued"})
    assert unknown.status_code == 204


def _forged(settings: Settings, owner: Session, kind: str) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": owner.user_id,
        "wid": owner.workspace_id,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
        "jti": "x",
        "typ": "access",
    }
    if kind == "alg-none":
        return jwt.encode(claims, "", algorithm="none")
    if kind == "wrong-key":
        return jwt.encode(claims, "k" * 64, algorithm="HS256")
    if kind == "tampered":
        header, _, signature = owner.access_token.split(".")
        _, payload, _ = jwt.encode({**claims, "wid": str(uuid.uuid4())}, JWT_SECRET).split(".")
        return f"{header}.{payload}.{signature}"
    cases: dict[str, dict[str, Any]] = {
        "expired": {"iat": now - 7200, "exp": now - 3600},
        "wrong-audience": {"aud": "someone-else"},
        "wrong-issuer": {"iss": "someone-else"},
        "missing-wid": {"wid": None},
        "unknown-member": {"sub": str(uuid.uuid4())},
    }
    claims = {k: v for k, v in {**claims, **cases[kind]}.items() if v is not None}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "kind",
    [
        "alg-none",
        "wrong-key",
        "tampered",
        "expired",
        "wrong-audience",
        "wrong-issuer",
        "missing-wid",
        "unknown-member",
    ],
)
def test_bad_access_tokens_are_401(
    client: httpx.Client, owner: Session, tmp_path: Any, kind: str
) -> None:
    token = _forged(test_settings(tmp_path), owner, kind)
    error = _error(_me(client, _bearer(token)), 401)
    assert error["code"] == "unauthorized"
    assert owner.workspace_id not in json.dumps(error)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer " + "a" * 9000},
        {"X-API-Key": "not-a-loom-key"},
    ],
    ids=["none", "basic", "empty", "garbage", "huge", "foreign-key"],
)
def test_missing_or_malformed_credentials_are_401(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    assert _error(_me(client, headers), 401)["code"] == "unauthorized"


# Workspaces -------------------------------------------------------------------------


def test_create_and_list_workspaces(client: httpx.Client, owner: Session) -> None:
    created = client.post("/v1/workspaces", json={"name": "Second"}, headers=owner.headers)
    assert created.status_code == 201, created.text
    workspace, pair = created.json()["workspace"], created.json()["tokens"]
    assert (workspace["name"], workspace["role"]) == ("Second", "owner")
    assert pair["workspace_id"] == workspace["id"] and pair["user_id"] == owner.user_id
    listed = client.get("/v1/workspaces", headers=_bearer(pair["access_token"])).json()
    assert [(w["id"], w["role"]) for w in listed] == [
        (owner.workspace_id, "owner"),
        (workspace["id"], "owner"),
    ]
    current = client.get("/v1/workspaces/current", headers=_bearer(pair["access_token"]))
    assert current.json()["id"] == workspace["id"]
    _error(client.post("/v1/workspaces", json={"name": "x", "id": "y"}, headers=owner.headers), 422)


# Members and roles ------------------------------------------------------------------


def test_roles_decide_who_manages_what(client: httpx.Client, owner: Session) -> None:
    admin = join_workspace(client, owner, "admin")
    editor = join_workspace(client, owner, "editor")
    viewer = join_workspace(client, owner, "viewer")
    members = client.get("/v1/workspaces/current/members", headers=viewer.headers).json()
    assert {m["email"]: m["role"] for m in members} == {
        owner.email: "owner",
        admin.email: "admin",
        editor.email: "editor",
        viewer.email: "viewer",
    }

    invite = {"email": new_email(), "role": "viewer"}
    refused = client.post("/v1/workspaces/current/invitations", json=invite, headers=viewer.headers)
    assert _error(refused, 403)["code"] == "forbidden"
    for method, path in [("POST", "/v1/api-keys"), ("GET", "/v1/api-keys")]:
        body = {"name": "k", "scopes": ["runs:read"]} if method == "POST" else None
        _error(client.request(method, path, json=body, headers=editor.headers), 403)

    def set_role(actor: Session, target: Session, role: str) -> httpx.Response:
        return client.patch(
            f"/v1/workspaces/current/members/{target.user_id}",
            json={"role": role},
            headers=actor.headers,
        )

    # Admins manage members below owners, but never owners.
    assert set_role(admin, viewer, "editor").json()["role"] == "editor"
    _error(set_role(admin, owner, "admin"), 403)
    _error(set_role(admin, viewer, "owner"), 403)
    _error(
        client.delete(f"/v1/workspaces/current/members/{owner.user_id}", headers=admin.headers), 403
    )
    _error(set_role(editor, viewer, "viewer"), 403)

    # A workspace keeps its last owner.
    assert _error(set_role(owner, owner, "admin"), 409)["code"] == "last_owner"
    leave = client.delete(f"/v1/workspaces/current/members/{owner.user_id}", headers=owner.headers)
    assert _error(leave, 409)["code"] == "last_owner"
    assert set_role(owner, admin, "owner").json()["role"] == "owner"
    assert set_role(owner, owner, "admin").json()["role"] == "admin"

    # Anyone may leave.
    gone = client.delete(f"/v1/workspaces/current/members/{viewer.user_id}", headers=viewer.headers)
    assert gone.status_code == 204


def test_a_removed_member_loses_access_at_once(client: httpx.Client, owner: Session) -> None:
    editor = join_workspace(client, owner, "editor")
    assert client.get("/v1/workspaces/current", headers=editor.headers).status_code == 200
    removed = client.delete(
        f"/v1/workspaces/current/members/{editor.user_id}", headers=owner.headers
    )
    assert removed.status_code == 204
    _error(client.get("/v1/workspaces/current", headers=editor.headers), 401)
    _error(client.post("/v1/auth/refresh", json={"refresh_token": editor.refresh_token}), 401)
    # Their own workspace is untouched.
    back = client.post("/v1/auth/login", json={"email": editor.email, "password": PASSWORD})
    assert back.status_code == 200 and back.json()["workspace_id"] != owner.workspace_id


def test_a_role_change_applies_to_the_next_request(client: httpx.Client, owner: Session) -> None:
    admin = join_workspace(client, owner, "admin")
    assert client.get("/v1/api-keys", headers=admin.headers).status_code == 200
    client.patch(
        f"/v1/workspaces/current/members/{admin.user_id}",
        json={"role": "viewer"},
        headers=owner.headers,
    )
    _error(client.get("/v1/api-keys", headers=admin.headers), 403)


# Invitations ------------------------------------------------------------------------


def test_invitations_are_accepted_once_by_the_invited_address(
    client: httpx.Client, owner: Session
) -> None:
    person = signup(client, workspace="mine")
    first = client.post(
        "/v1/workspaces/current/invitations",
        json={"email": person.email.upper(), "role": "viewer"},
        headers=owner.headers,
    )
    assert first.status_code == 201, first.text
    assert first.headers["cache-control"] == "no-store"
    assert (first.json()["email"], first.json()["role"]) == (person.email, "viewer")
    # Inviting again replaces the pending invitation and its token.
    again = client.post(
        "/v1/workspaces/current/invitations",
        json={"email": person.email, "role": "editor"},
        headers=owner.headers,
    )
    pending = client.get("/v1/workspaces/current/invitations", headers=owner.headers).json()
    assert [(i["id"], i["role"]) for i in pending] == [(first.json()["id"], "editor")]
    assert "token" not in pending[0]

    stale = client.post(
        "/v1/invitations/accept", json={"token": first.json()["token"]}, headers=person.headers
    )
    _error(stale, 404)
    someone_else = signup(client)
    not_theirs = client.post(
        "/v1/invitations/accept",
        json={"token": again.json()["token"]},
        headers=someone_else.headers,
    )
    _error(not_theirs, 403)

    accepted = client.post(
        "/v1/invitations/accept", json={"token": again.json()["token"]}, headers=person.headers
    )
    assert accepted.status_code == 200, accepted.text
    joined = session_of(accepted.json())
    assert joined.workspace_id == owner.workspace_id and joined.user_id == person.user_id
    assert _me(client, joined.headers).json()["role"] == "editor"
    reused = client.post(
        "/v1/invitations/accept", json={"token": again.json()["token"]}, headers=person.headers
    )
    _error(reused, 404)
    assert client.get("/v1/workspaces/current/invitations", headers=owner.headers).json() == []
    member_again = client.post(
        "/v1/workspaces/current/invitations",
        json={"email": person.email, "role": "viewer"},
        headers=owner.headers,
    )
    assert _error(member_again, 409)["code"] == "already_member"


def test_a_revoked_invitation_cannot_be_accepted(client: httpx.Client, owner: Session) -> None:
    person = signup(client)
    invited = client.post(
        "/v1/workspaces/current/invitations",
        json={"email": person.email, "role": "viewer"},
        headers=owner.headers,
    ).json()
    revoked = client.delete(
        f"/v1/workspaces/current/invitations/{invited['id']}", headers=owner.headers
    )
    assert revoked.status_code == 204
    accept = client.post(
        "/v1/invitations/accept", json={"token": invited["token"]}, headers=person.headers
    )
    _error(accept, 404)
    _error(
        client.post(
            "/v1/workspaces/current/invitations",
            json={"email": person.email, "role": "owner"},
            headers=owner.headers,
        ),
        422,
    )


# API keys ---------------------------------------------------------------------------


def test_api_key_lifecycle(client: httpx.Client, owner: Session, database: Database) -> None:
    created = client.post(
        "/v1/api-keys",
        json={"name": " deploy bot ", "scopes": ["runs:write", "runs:read", "runs:read"]},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    key = created.json()
    assert key["key"].startswith(f"loom_{key['prefix']}_")
    assert (key["name"], key["scopes"]) == ("deploy bot", ["runs:read", "runs:write"])

    listed = client.get("/v1/api-keys", headers=owner.headers).json()
    assert [k["id"] for k in listed] == [key["id"]]
    assert "key" not in listed[0] and "key_hash" not in listed[0]
    assert listed[0]["last_used_at"] is None

    for headers in (_bearer(key["key"]), {"X-API-Key": key["key"]}):
        me = _me(client, headers)
        assert me.status_code == 200, me.text
        assert me.json() == {
            "kind": "api_key",
            "workspace_id": owner.workspace_id,
            "user_id": None,
            "email": None,
            "role": None,
            "key_id": key["id"],
            "scopes": ["runs:read", "runs:write"],
        }
    used = client.get("/v1/api-keys", headers=owner.headers).json()[0]["last_used_at"]
    assert used is not None
    _me(client, _bearer(key["key"]))
    assert client.get("/v1/api-keys", headers=owner.headers).json()[0]["last_used_at"] == used

    both = {"Authorization": f"Bearer {owner.access_token}", "X-API-Key": key["key"]}
    _error(_me(client, both), 401)
    wrong_secret = key["key"][:-1] + ("a" if key["key"][-1] != "a" else "b")
    assert _error(_me(client, _bearer(wrong_secret)), 401)["message"] == "The API key is invalid."

    assert client.delete(f"/v1/api-keys/{key['id']}", headers=owner.headers).status_code == 204
    assert "revoked" in _error(_me(client, _bearer(key["key"])), 401)["message"]
    assert client.delete(f"/v1/api-keys/{key['id']}", headers=owner.headers).status_code == 204
    _error(client.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=owner.headers), 404)


def test_an_expired_api_key_is_401(
    client: httpx.Client, owner: Session, database: Database
) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    key = _new_key(client, owner, ["runs:read"], expires_at=soon)
    assert _me(client, _bearer(key["key"])).status_code == 200
    with database.tenant(owner.workspace_id) as conn:
        conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = %s",
            (key["id"],),
        )
    assert "expired" in _error(_me(client, _bearer(key["key"])), 401)["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "k", "scopes": ["runs:read", "root"]},
        {"name": "k", "scopes": []},
        {"name": "k", "scopes": ["runs:read"], "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "k", "scopes": ["runs:read"], "expires_at": "2999-01-01T00:00:00"},
        {"name": "", "scopes": ["runs:read"]},
        {"name": "k", "scopes": ["runs:read"], "workspace_id": str(uuid.uuid4())},
    ],
    ids=["unknown-scope", "no-scope", "past", "naive-time", "no-name", "extra-field"],
)
def test_invalid_api_key_requests_are_422(
    client: httpx.Client, owner: Session, body: dict[str, Any]
) -> None:
    _error(client.post("/v1/api-keys", json=body, headers=owner.headers), 422)


def test_api_keys_cannot_manage_api_keys_or_people(client: httpx.Client, owner: Session) -> None:
    key = _new_key(client, owner, ["workflows:read", "workflows:write"])
    as_key = _bearer(key["key"])
    for method, path, body in [
        ("POST", "/v1/api-keys", {"name": "child", "scopes": ["workflows:read"]}),
        ("GET", "/v1/api-keys", None),
        ("DELETE", f"/v1/api-keys/{key['id']}", None),
        ("POST", "/v1/workspaces", {"name": "mine"}),
        ("GET", "/v1/workspaces/current/members", None),
        ("POST", "/v1/workspaces/current/invitations", {"email": new_email(), "role": "admin"}),
    ]:
        response = client.request(method, path, json=body, headers=as_key)
        assert _error(response, 403)["code"] == "forbidden", (method, path)
    assert _me(client, as_key).status_code == 200


def test_scopes_and_roles_guard_routes_through_allow(custom: httpx.Client) -> None:
    owner = signup(custom)
    reader = _new_key(custom, owner, ["workflows:read"])
    writer = _new_key(custom, owner, ["workflows:write"])
    missing = custom.get("/v1/test-probe/write", headers=_bearer(reader["key"]))
    assert "workflows:write" in _error(missing, 403)["message"]
    allowed = custom.get("/v1/test-probe/write", headers=_bearer(writer["key"]))
    assert allowed.json() == {"kind": "api_key"}
    viewer = join_workspace(custom, owner, "viewer")
    assert (
        "editor role"
        in _error(custom.get("/v1/test-probe/write", headers=viewer.headers), 403)["message"]
    )
    assert custom.get("/v1/test-probe/write", headers=owner.headers).json() == {"kind": "user"}


# Tenant isolation -------------------------------------------------------------------


def test_another_workspaces_ids_are_404_and_change_nothing(client: httpx.Client) -> None:
    a, b = signup(client), signup(client)
    b_member = join_workspace(client, b, "editor")
    b_key = _new_key(client, b, ["runs:read"])
    b_invitation = client.post(
        "/v1/workspaces/current/invitations",
        json={"email": new_email(), "role": "viewer"},
        headers=b.headers,
    ).json()
    attempts = [
        ("PATCH", f"/v1/workspaces/current/members/{b_member.user_id}", {"role": "owner"}),
        ("PATCH", f"/v1/workspaces/current/members/{b.user_id}", {"role": "viewer"}),
        ("DELETE", f"/v1/workspaces/current/members/{b_member.user_id}", None),
        ("DELETE", f"/v1/workspaces/current/members/{b.user_id}", None),
        ("DELETE", f"/v1/api-keys/{b_key['id']}", None),
        ("DELETE", f"/v1/workspaces/current/invitations/{b_invitation['id']}", None),
    ]
    for method, path, body in attempts:
        response = client.request(method, path, json=body, headers=a.headers)
        assert _error(response, 404)["code"] == "not_found", (method, path)

    members = client.get("/v1/workspaces/current/members", headers=b.headers).json()
    assert {m["user_id"]: m["role"] for m in members} == {
        b.user_id: "owner",
        b_member.user_id: "editor",
    }
    assert client.get("/v1/api-keys", headers=b.headers).json()[0]["revoked_at"] is None
    assert _me(client, _bearer(b_key["key"])).status_code == 200
    pending = client.get("/v1/workspaces/current/invitations", headers=b.headers).json()
    assert [i["id"] for i in pending] == [b_invitation["id"]]
    a_sees = client.get("/v1/workspaces/current/members", headers=a.headers).json()
    assert [m["user_id"] for m in a_sees] == [a.user_id]
    assert client.get("/v1/api-keys", headers=a.headers).json() == []
    assert client.get("/v1/workspaces/current/invitations", headers=a.headers).json() == []


def test_spoofed_workspace_and_address_headers_change_nothing(client: httpx.Client) -> None:
    a, b = signup(client), signup(client)
    a_key = _new_key(client, a, ["runs:read"])
    spoof = {"X-Workspace-ID": b.workspace_id, "X-Forwarded-For": "10.0.0.1, 127.0.0.1"}
    current = client.get("/v1/workspaces/current", headers={**a.headers, **spoof})
    assert current.json()["id"] == a.workspace_id
    members = client.get("/v1/workspaces/current/members", headers={**a.headers, **spoof})
    assert [m["user_id"] for m in members.json()] == [a.user_id]
    as_key = _me(client, {**_bearer(a_key["key"]), **spoof})
    assert as_key.json()["workspace_id"] == a.workspace_id
    listed = client.get("/v1/workspaces", headers={**a.headers, **spoof}).json()
    assert [w["id"] for w in listed] == [a.workspace_id]


def test_cross_workspace_lookups_go_only_through_the_locator(
    client: httpx.Client, owner: Session, database: Database
) -> None:
    with database.system() as conn:
        visible = conn.execute("SELECT count(*) AS n FROM memberships").fetchone()
        located = conn.execute(
            "SELECT * FROM loom_locate_memberships(%s)", (owner.user_id,)
        ).fetchall()
        is_locator = conn.execute(
            "SELECT pg_has_role('loom_app', 'loom_locator', 'MEMBER') AS m"
        ).fetchone()
        functions = conn.execute(
            "SELECT p.proname, pg_get_userbyid(p.proowner) AS owner, p.prosecdef "
            "FROM pg_proc p WHERE p.proname IN ('loom_locate_memberships', "
            "'loom_locate_api_key', 'loom_locate_invitation') ORDER BY 1"
        ).fetchall()
    assert visible == {"n": 0}
    assert located == [{"workspace_id": uuid.UUID(owner.workspace_id), "role": "owner"}]
    assert is_locator == {"m": False}
    assert [(f["owner"], f["prosecdef"]) for f in functions] == [("loom_locator", True)] * 3


# OIDC -------------------------------------------------------------------------------


def _oidc_token(key: rsa.RSAPrivateKey, email: str, *, kid: str = "k1", **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": OIDC_ISSUER,
        "aud": OIDC_AUDIENCE,
        "sub": "idp|" + email,
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + 300,
    }
    claims = {k: v for k, v in {**claims, **changes}.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def test_oidc_tokens_map_to_a_loom_user_and_workspace(
    custom: httpx.Client, signing_key: rsa.RSAPrivateKey
) -> None:
    person = signup(custom)
    second = custom.post("/v1/workspaces", json={"name": "b"}, headers=person.headers).json()
    first_membership = _me(custom, _bearer(_oidc_token(signing_key, person.email.upper())))
    assert first_membership.status_code == 200, first_membership.text
    assert first_membership.json()["user_id"] == person.user_id
    assert first_membership.json()["workspace_id"] == person.workspace_id
    chosen = _oidc_token(signing_key, person.email, loom_workspace_id=second["workspace"]["id"])
    assert _me(custom, _bearer(chosen)).json()["workspace_id"] == second["workspace"]["id"]
    # The claim only chooses among the user's own workspaces.
    stranger = signup(custom)
    foreign = _oidc_token(signing_key, person.email, loom_workspace_id=stranger.workspace_id)
    _error(_me(custom, _bearer(foreign)), 401)


@pytest.fixture(scope="module")
def oidc_person(custom: httpx.Client) -> Session:
    return signup(custom)


_OIDC_INVALID = "The identity token is invalid."


@pytest.mark.parametrize(
    ("case", "message"),
    [
        # Another issuer is not OIDC at all: it is checked, and refused, as a Loom token.
        ("wrong-issuer", "The access token is invalid."),
        ("wrong-audience", _OIDC_INVALID),
        ("unknown-kid", _OIDC_INVALID),
        ("other-key", _OIDC_INVALID),
        ("hs256", _OIDC_INVALID),
        ("expired", "The identity token has expired."),
        ("unverified-email", "The identity token has no verified email."),
        ("unknown-email", "No Loom account matches this identity."),
    ],
)
def test_bad_oidc_tokens_are_401(
    custom: httpx.Client,
    signing_key: rsa.RSAPrivateKey,
    oidc_person: Session,
    case: str,
    message: str,
) -> None:
    email, now = oidc_person.email, int(time.time())
    if case == "other-key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = _oidc_token(other, email)
    elif case == "hs256":
        claims = jwt.decode(_oidc_token(signing_key, email), options={"verify_signature": False})
        token = jwt.encode(claims, JWT_SECRET, algorithm="HS256", headers={"kid": "k1"})
    else:
        cases: dict[str, dict[str, Any]] = {
            "wrong-issuer": {"iss": "https://evil.example.test/"},
            "wrong-audience": {"aud": "another-client"},
            "unknown-kid": {"kid": "k2"},
            "expired": {"iat": now - 7200, "exp": now - 3600},
            "unverified-email": {"email_verified": False},
            "unknown-email": {},
        }
        token = _oidc_token(
            signing_key, new_email() if case == "unknown-email" else email, **cases[case]
        )
    assert _error(_me(custom, _bearer(token)), 401)["message"] == message
    assert _me(custom, _bearer(_oidc_token(signing_key, email))).status_code == 200


def test_loom_tokens_still_work_with_oidc_enabled(custom: httpx.Client) -> None:
    person = signup(custom)
    assert _me(custom, person.headers).json()["user_id"] == person.user_id
