"""The real API over real HTTP on 127.0.0.1, and signed-up users to call it with."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import APIRouter, FastAPI
from pydantic import SecretStr

from loom.api.app import ALL_ROUTERS, create_app
from loom.config import Settings
from loom.db import Database
from loom.engine.dispatch import RunDispatcher

JWT_SECRET = "test-secret-0123456789abcdef0123456789abcdef"
PASSWORD = "correct horse battery staple"
UNLIMITED_PER_MINUTE = 100_000


@dataclass(frozen=True)
class ApiServer:
    base_url: str
    app: FastAPI


@dataclass(frozen=True)
class Session:
    access_token: str
    refresh_token: str
    user_id: str
    workspace_id: str
    email: str = ""
    password: str = PASSWORD
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.headers.setdefault("Authorization", f"Bearer {self.access_token}")


def test_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for tests: a fixed JWT secret, LOOM_HOME in ``tmp_path``, no rate limits
    that a test could reach. ``overrides`` are further fields by name."""
    values: dict[str, object] = {
        "jwt_secret": SecretStr(JWT_SECRET),
        "home": tmp_path,
        "rate_limit_per_minute": UNLIMITED_PER_MINUTE,
        "ip_rate_limit_per_minute": UNLIMITED_PER_MINUTE,
        "public_rate_limit_per_minute": UNLIMITED_PER_MINUTE,
        **overrides,
    }
    return Settings.model_validate(values)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a factory, not a test


@contextmanager
def start_api_server(
    db: Database,
    settings: Settings,
    *,
    dispatcher: RunDispatcher | None = None,
    routers: Sequence[APIRouter] = ALL_ROUTERS,
) -> Iterator[ApiServer]:
    """``create_app`` under uvicorn on a background thread, on a free loopback port; yields
    once the server answers and stops it on exit."""
    app = create_app(lambda: db, settings=settings, dispatcher=dispatcher, routers=routers)
    # Bound here and handed over, so no other process can take the port in between.
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only for
    # sockets that say they are TCP; with proto 0, Nagle adds ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="api-server", daemon=True
    )
    thread.start()
    try:
        _wait_answering(base_url, thread)
        yield ApiServer(base_url=base_url, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _wait_answering(base_url: str, thread: threading.Thread, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise AssertionError("the API server stopped during start-up")
        try:
            httpx.get(f"{base_url}/v1/public/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.02)
    raise AssertionError(f"{base_url} did not answer within {timeout} s")


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def signup(client: httpx.Client, *, email: str | None = None, workspace: str = "test") -> Session:
    """A new user owning a new workspace, signed in to it."""
    address = email or new_email()
    response = client.post(
        "/v1/auth/signup",
        json={"email": address, "password": PASSWORD, "workspace_name": workspace},
    )
    assert response.status_code == 201, response.text
    return session_of(response.json(), email=address)


def session_of(tokens: dict[str, object], *, email: str = "") -> Session:
    """A ``Session`` from a token pair reply (signup, login, refresh, accept)."""
    return Session(
        access_token=str(tokens["access_token"]),
        refresh_token=str(tokens["refresh_token"]),
        user_id=str(tokens["user_id"]),
        workspace_id=str(tokens["workspace_id"]),
        email=email,
    )


def join_workspace(client: httpx.Client, inviter: Session, role: str) -> Session:
    """A new person invited by ``inviter`` as ``role``, signed in to its workspace."""
    person = signup(client, workspace="own")
    invited = client.post(
        "/v1/workspaces/current/invitations",
        json={"email": person.email, "role": role},
        headers=inviter.headers,
    )
    assert invited.status_code == 201, invited.text
    accepted = client.post(
        "/v1/invitations/accept", json={"token": invited.json()["token"]}, headers=person.headers
    )
    assert accepted.status_code == 200, accepted.text
    return session_of(accepted.json(), email=person.email)


def create_credential(
    client: httpx.Client, session: Session, kind: str, data: dict[str, Any]
) -> str:
    """A new credential of ``kind`` in the session's workspace; its id."""
    made = client.post(
        "/v1/credentials",
        headers=session.headers,
        json={"name": uuid.uuid4().hex, "type": kind, "data": data},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def allow_hosts(client: httpx.Client, session: Session, *hosts: str) -> None:
    """Set the workspace's outbound allowlist (what tests reach loopback servers through)."""
    allowed = client.put(
        "/v1/workspaces/current/settings",
        headers=session.headers,
        json={"outbound_allowlist": list(hosts)},
    )
    assert allowed.status_code == 200, allowed.text
