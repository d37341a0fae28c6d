"""Credentials over real HTTP: written once, never read back, sealed in every row."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from loom.db import Database
from loom.secrets import service
from loom.secrets.keyring import CredentialUnreadable
from loom.secrets.types import Basic, BearerToken
from loom.secrets.vault import vault_for
from tests.utils.api import ApiServer, Session, join_workspace, signup
from tests.utils.leaks import scan_database, spellings, superuser_url
from tests.utils.pg import PgCluster

CANARY = "canary-5b8e1d42-never-shown"


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) >= {"code", "message", "solution", "request_id"}
    return error


def _create(
    client: httpx.Client, caller: Session | dict[str, str], name: str, kind: str, data: object
) -> httpx.Response:
    headers = caller.headers if isinstance(caller, Session) else caller
    return client.post(
        "/v1/credentials", json={"name": name, "type": kind, "data": data}, headers=headers
    )


@pytest.fixture
def owner(client: httpx.Client) -> Session:
    return signup(client)


def test_create_returns_metadata_and_resolve_returns_the_secrets(
    client: httpx.Client, owner: Session, database: Database, api_server: ApiServer
) -> None:
    response = _create(client, owner, "github", "basic", {"username": "ada", "password": CANARY})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "name", "type", "fields", "created_at", "updated_at"}
    assert body["name"] == "github" and body["type"] == "basic"
    assert body["fields"] == ["username", "password"]
    assert response.headers["cache-control"] == "no-store"

    vault = vault_for(api_server.app.state.settings)
    resolved = service.resolve(
        database, uuid.UUID(owner.workspace_id), uuid.UUID(body["id"]), vault=vault
    )
    assert isinstance(resolved, Basic)
    assert resolved.username == "ada"
    assert resolved.password.get_secret_value() == CANARY


def test_list_get_and_delete(client: httpx.Client, owner: Session) -> None:
    created = [
        _create(client, owner, name, "bearer_token", {"token": CANARY}).json()
        for name in ("b-token", "a-token")
    ]
    listed = client.get("/v1/credentials", headers=owner.headers)
    assert listed.status_code == 200
    assert [c["name"] for c in listed.json()] == ["a-token", "b-token"]
    one = client.get(f"/v1/credentials/{created[0]['id']}", headers=owner.headers)
    assert one.json() == created[0]

    deleted = client.delete(f"/v1/credentials/{created[0]['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    _error(client.get(f"/v1/credentials/{created[0]['id']}", headers=owner.headers), 404)
    _error(client.delete(f"/v1/credentials/{created[0]['id']}", headers=owner.headers), 404)
    assert [c["name"] for c in client.get("/v1/credentials", headers=owner.headers).json()] == [
        "a-token"
    ]


def test_a_duplicate_name_is_409(client: httpx.Client, owner: Session) -> None:
    assert _create(client, owner, "slack", "slack_bot", {"token": "xoxb-1"}).status_code == 201
    error = _error(_create(client, owner, "slack", "slack_bot", {"token": CANARY}), 409)
    assert error["code"] == "conflict" and "slack" in error["message"]
    assert CANARY not in str(error)
    # The same name in another workspace is a different credential.
    other = signup(client)
    assert _create(client, other, "slack", "slack_bot", {"token": "xoxb-2"}).status_code == 201


def test_another_workspaces_credential_is_404(client: httpx.Client, owner: Session) -> None:
    theirs = _create(client, signup(client), "notion", "notion_token", {"token": CANARY}).json()
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/v1/credentials/{theirs['id']}", headers=owner.headers)
        _error(response, 404)
    _error(client.get(f"/v1/credentials/{uuid.uuid4()}", headers=owner.headers), 404)
    assert client.get("/v1/credentials", headers=owner.headers).json() == []


def test_viewers_read_and_editors_write(client: httpx.Client, owner: Session) -> None:
    existing = _create(client, owner, "gh", "github_token", {"token": CANARY}).json()
    viewer = join_workspace(client, owner, "viewer")
    assert [c["id"] for c in client.get("/v1/credentials", headers=viewer.headers).json()] == [
        existing["id"]
    ]
    assert client.get(f"/v1/credentials/{existing['id']}", headers=viewer.headers).is_success
    _error(_create(client, viewer, "mine", "github_token", {"token": CANARY}), 403)
    _error(client.delete(f"/v1/credentials/{existing['id']}", headers=viewer.headers), 403)

    editor = join_workspace(client, owner, "editor")
    assert _create(client, editor, "editor's", "github_token", {"token": "t"}).status_code == 201
    _error(client.get("/v1/credentials"), 401)


def test_api_keys_need_the_credentials_scopes(client: httpx.Client, owner: Session) -> None:
    def key(scopes: list[str]) -> dict[str, str]:
        created = client.post(
            "/v1/api-keys", json={"name": "k", "scopes": scopes}, headers=owner.headers
        )
        assert created.status_code == 201, created.text
        return {"X-API-Key": created.json()["key"]}

    reader, writer = key(["credentials:read"]), key(["credentials:write"])
    assert _create(client, writer, "ci", "bearer_token", {"token": "t"}).status_code == 201
    assert [c["name"] for c in client.get("/v1/credentials", headers=reader).json()] == ["ci"]
    _error(client.get("/v1/credentials", headers=writer), 403)
    _error(_create(client, reader, "x", "bearer_token", {"token": "t"}), 403)


def test_validation_errors_do_not_echo_secrets(client: httpx.Client, owner: Session) -> None:
    bad_bodies: list[object] = [
        {"name": "x", "type": "basic", "data": {"username": "u", "password": CANARY, "x": CANARY}},
        {"name": "x", "type": "smtp", "data": {"host": "h", "port": CANARY, "password": CANARY}},
        {"name": "x", "type": "oauth2_client", "data": {"token_url": CANARY, "client_secret": 1}},
        {"name": "x", "type": "bearer_token", "data": CANARY},
        {"name": "x", "type": CANARY, "data": {"token": CANARY}},
        {"name": "x", "type": "bearer_token", "data": {"token": CANARY}, "extra": CANARY},
        {"name": ["x"], "type": "bearer_token", "data": {"token": CANARY}},
    ]
    for body in bad_bodies:
        response = client.post("/v1/credentials", json=body, headers=owner.headers)
        error = _error(response, 422)
        assert error["details"] and all(d["path"] for d in error["details"])
        assert CANARY not in response.text
    paths = {
        d["path"]
        for d in client.post("/v1/credentials", json=bad_bodies[0], headers=owner.headers).json()[
            "error"
        ]["details"]
    }
    assert paths == {"data.x"}
    assert client.get("/v1/credentials", headers=owner.headers).json() == []


def test_a_row_copied_to_another_workspace_or_id_does_not_decrypt(
    client: httpx.Client,
    owner: Session,
    database: Database,
    cluster: PgCluster,
    api_server: ApiServer,
) -> None:
    original = _create(client, owner, "orig", "bearer_token", {"token": CANARY}).json()
    other = signup(client)
    copy_id, moved_id = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(superuser_url(cluster), autocommit=True) as conn:
        copy = sql.SQL(
            "INSERT INTO credentials (id, workspace_id, name, type, ciphertext, nonce, "
            "wrapped_key, key_id, metadata) SELECT %s, %s, %s, type, ciphertext, nonce, "
            "wrapped_key, key_id, metadata FROM credentials WHERE id = %s"
        )
        conn.execute(copy, (copy_id, owner.workspace_id, "copy", original["id"]))
        conn.execute(copy, (moved_id, other.workspace_id, "moved", original["id"]))

    vault = vault_for(api_server.app.state.settings)
    ours = uuid.UUID(owner.workspace_id)
    assert isinstance(
        service.resolve(database, ours, uuid.UUID(original["id"]), vault=vault), BearerToken
    )
    for workspace, credential in ((ours, copy_id), (uuid.UUID(other.workspace_id), moved_id)):
        with pytest.raises(CredentialUnreadable) as caught:
            service.resolve(database, workspace, credential, vault=vault)
        assert CANARY not in str(caught.value)


def test_a_canary_secret_appears_nowhere_but_as_ciphertext(
    client: httpx.Client, cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    owner = signup(client)
    replies: list[httpx.Response] = []
    samples = [
        ("bearer_token", {"token": CANARY}),
        ("basic", {"username": "ada", "password": CANARY}),
        ("api_key", {"header": "X-Token", "value": CANARY}),
        (
            "oauth2_client",
            {"token_url": "https://auth.example.com/t", "client_id": "c", "client_secret": CANARY},
        ),
        ("smtp", {"host": "smtp.example.com", "port": 587, "password": CANARY}),
        ("slack_bot", {"token": CANARY}),
        ("github_token", {"token": CANARY}),
        ("notion_token", {"token": CANARY}),
        ("webhook_secret", {"secret": CANARY}),
        ("llm_api_key", {"provider": "openai", "api_key": CANARY}),
    ]
    for kind, data in samples:
        created = _create(client, owner, f"canary-{kind}", kind, data)
        assert created.status_code == 201, created.text
        replies += [
            created,
            client.get(f"/v1/credentials/{created.json()['id']}", headers=owner.headers),
        ]
    replies.append(client.get("/v1/credentials", headers=owner.headers))
    replies.append(_create(client, owner, "canary-bearer_token", "bearer_token", {"token": CANARY}))
    replies.append(_create(client, owner, "bad", "smtp", {"host": "h", "port": CANARY}))

    for reply in replies:
        assert CANARY not in reply.text
        assert not any(CANARY in value for value in reply.headers.values())
    assert scan_database(cluster, spellings(CANARY)) == []
    with psycopg.connect(superuser_url(cluster), autocommit=True) as conn:
        sealed = conn.execute(
            "SELECT count(*) FROM credentials WHERE workspace_id = %s "
            "AND length(ciphertext) > 0 AND length(wrapped_key) > 0",
            (owner.workspace_id,),
        ).fetchone()
    assert sealed == (len(samples),)
    assert CANARY not in caplog.text
    assert not any(CANARY in str(record.__dict__) for record in caplog.records)
