"""``/v1/dead-letters``: listed, read and replayed once, each workspace only its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from loom.db import Database
from loom.triggers.queue import PostgresQueue
from tests.utils.api import ApiServer, Session, signup


@pytest.fixture
def http(api_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, timeout=30) as client:
        yield client


def _dead_letter(database: Database, owner: Session, payload: dict[str, object]) -> str:
    queue = PostgresQueue(database, max_attempts=1)
    workspace = uuid.UUID(owner.workspace_id)
    message = queue.send(workspace, "test.topic", payload, hold=True)
    assert message is not None
    dead = queue.fail(message, "it broke", retryable=True)
    assert dead is not None
    return str(dead)


def test_dead_letters_are_listed_read_and_replayed_once(
    http: httpx.Client, database: Database
) -> None:
    owner = signup(http)
    first = _dead_letter(database, owner, {"n": 1})
    second = _dead_letter(database, owner, {"n": 2})
    listed = http.get("/v1/dead-letters", params={"limit": 1}, headers=owner.headers)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [item["id"] for item in page["items"]] == [second] and page["next_before"]
    rest = http.get(
        "/v1/dead-letters", params={"before": page["next_before"]}, headers=owner.headers
    )
    assert [item["id"] for item in rest.json()["items"]] == [first]

    one = http.get(f"/v1/dead-letters/{first}", headers=owner.headers).json()
    assert one["payload"] == {"n": 1} and one["error"] == "it broke" and one["attempts"] == 1
    assert one["topic"] == "test.topic" and one["replayed_at"] is None

    replayed = http.post(f"/v1/dead-letters/{first}/replay", headers=owner.headers)
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["status"] == "queued" and replayed.json()["event_id"] > 0
    again = http.post(f"/v1/dead-letters/{first}/replay", headers=owner.headers)
    assert again.status_code == 409
    assert "replayed" in again.json()["error"]["message"]
    pending = http.get("/v1/dead-letters", params={"replayed": "false"}, headers=owner.headers)
    assert [item["id"] for item in pending.json()["items"]] == [second]


def test_another_workspace_sees_none_of_them(http: httpx.Client, database: Database) -> None:
    owner = signup(http)
    letter = _dead_letter(database, owner, {"secret": "mine"})
    intruder = signup(http)
    assert http.get("/v1/dead-letters", headers=intruder.headers).json()["items"] == []
    assert http.get(f"/v1/dead-letters/{letter}", headers=intruder.headers).status_code == 404
    stolen = http.post(f"/v1/dead-letters/{letter}/replay", headers=intruder.headers)
    assert stolen.status_code == 404
    mine = http.get(f"/v1/dead-letters/{letter}", headers=owner.headers).json()
    assert mine["replayed_at"] is None
