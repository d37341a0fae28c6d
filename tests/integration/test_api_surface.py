"""The whole API surface: every route needs credentials unless it is on the public list, and
fuzzing the OpenAPI document finds no server error."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from loom.api.app import ALL_ROUTERS, create_app
from tests.utils.api import ApiServer, Session, signup

PUBLIC = {
    ("GET", "/v1/public/health"),
    ("POST", "/v1/auth/signup"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    # A one-time respond link is its own credential (256 random bits, stored hashed).
    ("GET", "/v1/public/hil/{token}"),
    ("POST", "/v1/public/hil/{token}/respond"),
    # Webhook deliveries authenticate by the trigger's signature (HMAC over the body), not a
    # Loom credential; rate limited per trigger.
    ("POST", "/v1/hooks/{trigger_id}"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}


# Raw ASGI routes do not appear in the OpenAPI document.
NOT_IN_OPENAPI = {("GET", "/v1/mcp"), ("POST", "/v1/mcp"), ("DELETE", "/v1/mcp")}
DOCS = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}


def _routes() -> list[tuple[str, str]]:
    app = create_app(lambda: None, routers=ALL_ROUTERS)  # type: ignore[arg-type,return-value]
    found = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]
    return sorted({*found, *NOT_IN_OPENAPI, *DOCS})


def test_every_route_but_the_public_ones_needs_credentials(client: httpx.Client) -> None:
    walked = 0
    for method, path in _routes():
        if (method, path) in PUBLIC:
            continue
        url = re.sub(r"\{[^}]*version[^}]*\}", "1", path)
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), url)
        response = client.request(method, url, json={})
        assert response.status_code == 401, (method, path, response.status_code, response.text)
        walked += 1
    assert walked >= 30, "the walk must cover the API, not a handful of routes"


def test_the_public_list_is_what_it_claims(client: httpx.Client) -> None:
    routes = set(_routes())
    assert PUBLIC - routes == set(), "a public route was renamed or removed"
    assert client.get("/v1/public/health").status_code == 200


@pytest.fixture(scope="module")
def fuzz_target(engine_api: ApiServer) -> Iterator[tuple[ApiServer, Session]]:
    with httpx.Client(base_url=engine_api.base_url, timeout=30) as http:
        yield engine_api, signup(http)


# The schema comes from the app itself (no server needed to collect); each case is sent to
# a live server with a real engine, as a signed-up user.
schema = schemathesis.openapi.from_dict(create_app(lambda: None).openapi())  # type: ignore[arg-type,return-value]


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_finds_no_server_error(
    case: schemathesis.Case[Any], fuzz_target: tuple[ApiServer, Session]
) -> None:
    server, session = fuzz_target
    # Generous: the first agent save imports litellm (for its provider list), seconds here.
    response = case.call(base_url=server.base_url, headers=session.headers, timeout=120)
    assert response.status_code < 500, (
        case.method,
        case.path,
        response.status_code,
        response.text[:500],
    )
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code >= 400 and content_type.startswith("application/json"):
        body = response.json()
        assert set(body.get("error", {})) >= {"code", "message", "solution"}, body
