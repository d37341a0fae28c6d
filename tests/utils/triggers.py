"""Workflows with triggers, signed deliveries, and an engine that really runs what they start."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from psycopg.conninfo import make_conninfo

from loom import signing
from loom.config import Settings
from loom.db import Database, DatabaseUrls, apply_migrations
from loom.engine.run_state import Finished
from loom.engine.service import get_run
from loom.engine.states import RunStatus
from loom.runtime.local.engine_thread import EngineThread
from loom.runtime.local.platform import build_engine
from loom.triggers.signatures import hmac_hex
from tests.utils.pg import PgCluster


def flow(trigger: dict[str, Any], *, then: dict[str, Any] | None = None) -> dict[str, Any]:
    """A workflow: one trigger node ``t`` (plus MANUAL ``m``), then a node ``out`` echoing
    the run input (or ``then``)."""
    out = then or {
        "id": "out",
        "type": "ACTION",
        "subtype": "TRANSFORM",
        "parameters": {"value": "{% $input %}"},
    }
    return {
        "name": f"triggered {uuid.uuid4().hex[:8]}",
        "nodes": [
            {"id": "t", "type": "TRIGGER", **trigger},
            {"id": "m", "type": "TRIGGER", "subtype": "MANUAL"},
            {**out, "id": "out"},
        ],
        "edges": [{"from": "t", "to": "out"}, {"from": "m", "to": "out"}],
    }


def webhook(**parameters: Any) -> dict[str, Any]:
    return {"subtype": "WEBHOOK", "parameters": parameters}


def cron(expression: str = "*/5 * * * *", **parameters: Any) -> dict[str, Any]:
    return {"subtype": "CRON", "parameters": {"cron": expression, **parameters}}


def signed(
    secret: str, body: bytes, *, now: float | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        signing.HEADER: signing.sign(secret.encode(), body, now=now),
        **(extra or {}),
    }


def github_headers(secret: str, body: bytes, event: str, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256=" + hmac_hex(secret.encode(), body),
    }


def slack_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if now is None else now))
    base = b"v0:" + stamp.encode() + b":" + body
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + hmac_hex(secret.encode(), base),
    }


def body_of(value: Any) -> bytes:
    return json.dumps(value).encode()


def deploy(
    client: httpx.Client, headers: dict[str, str], workflow_id: str, **options: Any
) -> dict[str, Any]:
    response = client.post(f"/v1/workflows/{workflow_id}/deploy", json=options, headers=headers)
    assert response.status_code == 200, response.text
    deployed: dict[str, Any] = response.json()
    return deployed


def create(client: httpx.Client, headers: dict[str, str], definition: dict[str, Any]) -> str:
    response = client.post(
        "/v1/workflows",
        json={"name": definition["name"], "definition": definition},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def trigger_t(deployed: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in deployed["triggers"] if t["node_id"] == "t")
    return found


def wait_until(check: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_finished(db: Database, workspace_id: uuid.UUID, run_id: uuid.UUID) -> dict[str, Any]:
    def finished() -> bool:
        return RunStatus(get_run(db, workspace_id, run_id).run["status"]).finished

    wait_until(finished, what=f"run {run_id}")
    run: dict[str, Any] = get_run(db, workspace_id, run_id).run
    return run


def runs_of(db: Database, workspace_id: uuid.UUID, workflow_id: uuid.UUID) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        return conn.execute(
            "SELECT id, status, input, trigger, created_at, started_at, finished_at FROM runs "
            "WHERE workflow_id = %s ORDER BY created_at",
            (workflow_id,),
        ).fetchall()


def count(db: Database, workspace_id: uuid.UUID, table: str) -> int:
    with db.tenant(workspace_id) as conn:
        row = conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()
    assert row is not None
    return int(row["n"])


@contextmanager
def running_engine(db: Database, settings: Settings) -> Iterator[EngineThread]:
    _, runner = build_engine(settings, db)
    engine = EngineThread(runner, deadline_sweep_seconds=60)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


@contextmanager
def isolated_database(cluster: PgCluster, prefix: str) -> Iterator[Database]:
    """A migrated database of its own: schedulers and queue consumers look across every
    workspace of their database, so they must not see other tests' schedules and events."""
    owner = cluster.create_database(f"{prefix}_{uuid.uuid4().hex[:8]}")
    apply_migrations(owner)
    app = make_conninfo(owner, user="loom_app")
    with Database(DatabaseUrls(owner=owner, app=app, embedded=False), max_size=30) as db:
        yield db


def new_workspace(db: Database) -> uuid.UUID:
    workspace_id = uuid.uuid4()
    with db.tenant(workspace_id) as conn:
        conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'triggers')", (workspace_id,))
    return workspace_id


class RecordingDispatcher:
    """A dispatcher that only remembers what it was asked to drive."""

    def __init__(self) -> None:
        self.submitted: list[uuid.UUID] = []

    def submit(self, workspace_id: uuid.UUID, run_id: uuid.UUID) -> None:
        self.submitted.append(run_id)

    def report(self, workspace_id: uuid.UUID, run_id: uuid.UUID, finished: Finished) -> None:
        raise AssertionError("not expected in these tests")

    def cancel(self, workspace_id: uuid.UUID, run_id: uuid.UUID, reason: str) -> RunStatus:
        raise AssertionError("not expected in these tests")
