"""Fixtures many integration tests share: a client of the API with the local engine
attached, and the scripted LLM provider."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

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
