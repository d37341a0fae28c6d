"""`loom up` hosts the engine: it resumes active runs when it starts, and a clean stop
leaves unfinished runs resumable, not cancelled."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
from psycopg.conninfo import make_conninfo

from loom.db import Database, DatabaseUrls, apply_migrations
from loom.engine.service import get_run, start_run
from loom.workflows.service import create_workflow
from tests.utils.api import signup
from tests.utils.engine import example
from tests.utils.pg import PgCluster
from tests.utils.procs import cli_env, free_port, start_up, stop_up


def _status(db: Database, ws: uuid.UUID, run_id: uuid.UUID) -> str:
    return str(get_run(db, ws, run_id).run["status"])


def test_up_resumes_runs_and_a_stop_leaves_them_resumable(
    cluster: PgCluster, tmp_path: Path
) -> None:
    owner = cluster.create_database(f"e2e_{uuid.uuid4().hex[:8]}")
    apply_migrations(owner)
    app = make_conninfo(owner, user="loom_app")
    with Database(DatabaseUrls(owner=owner, app=app, embedded=False)) as db:
        ws = uuid.uuid4()
        with db.tenant(ws) as conn:
            conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'e2e')", (ws,))
        flow = create_workflow(db, ws, example("wait")).workflow_id
        quick = start_run(db, ws, flow, {"seconds": 1}).run_id
        slow = start_run(db, ws, flow, {"seconds": 600}).run_id

        port = free_port()
        env = cli_env(tmp_path, DATABASE_URL=cluster.as_url(owner))
        proc = start_up(env, port)
        try:
            deadline = time.monotonic() + 30
            while _status(db, ws, quick) != "SUCCESS" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _status(db, ws, quick) == "SUCCESS"
            assert _status(db, ws, slow) == "RUNNING"
        finally:
            stop_up(proc)
        detail = get_run(db, ws, slow)
        assert detail.run["status"] == "RUNNING", "a clean stop does not cancel runs"
        pause = next(n for n in detail.nodes if n["node_id"] == "pause")
        assert pause["status"] == "running" and pause["wake_at"] is not None


def test_an_approval_answered_after_a_restart_finishes_the_run(
    cluster: PgCluster, tmp_path: Path
) -> None:
    owner = cluster.create_database(f"e2e_{uuid.uuid4().hex[:8]}")
    port = free_port()
    env = cli_env(tmp_path, DATABASE_URL=cluster.as_url(owner))
    definition = {
        "name": "approve",
        "nodes": [
            {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
            {
                "id": "ask",
                "type": "HUMAN_IN_THE_LOOP",
                "subtype": "APPROVAL",
                "parameters": {"title": "Go?"},
            },
        ],
        "edges": [{"from": "start", "to": "ask"}],
    }
    base = f"http://127.0.0.1:{port}"
    proc = start_up(env, port)
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            me = signup(http)
            flow = http.post(
                "/v1/workflows", headers=me.headers, json={"name": "a", "definition": definition}
            ).json()["id"]
            run_id = http.post(
                f"/v1/workflows/{flow}/runs", headers=me.headers, json={"input": {}}
            ).json()["run_id"]
            deadline = time.monotonic() + 30
            pending: list[dict[str, object]] = []
            while not pending and time.monotonic() < deadline:
                pending = http.get("/v1/hil?status=pending", headers=me.headers).json()
                time.sleep(0.1)
            assert pending, "the approval was filed"
    finally:
        stop_up(proc)

    proc = start_up(env, port)
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            answered = http.post(
                f"/v1/hil/{pending[0]['id']}/respond",
                headers=me.headers,
                json={"approved": True},
            )
            assert answered.status_code == 200, answered.text
            deadline = time.monotonic() + 30
            run: dict[str, object] = {}
            while run.get("status") != "SUCCESS" and time.monotonic() < deadline:
                run = http.get(f"/v1/runs/{run_id}", headers=me.headers).json()
                time.sleep(0.1)
            assert run["status"] == "SUCCESS", run
    finally:
        stop_up(proc)
