"""Fixtures many integration tests share: a client of the API with the local engine
attached, a second workspace, and the scripted LLM provider."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from loom.db import Database
from tests.utils.api import ApiServer
from tests.utils.fake_llm import FakeLlm, fake_llm


@pytest.fixture
def http(engine_api: ApiServer) -> Iterator[httpx.Client]:
    """A client of the whole API, whose started runs really run."""
    with httpx.Client(base_url=engine_api.base_url, timeout=60) as client:
        yield client


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with fake_llm() as provider:
        yield provider


@pytest.fixture
def other_workspace(database: Database) -> uuid.UUID:
    """A second workspace beside ``workspace``, for what must not cross between them."""
    ws = uuid.uuid4()
    with database.tenant(ws) as conn:
        conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'B')", (ws,))
    return ws
