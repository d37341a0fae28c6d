"""kill -9 a runner mid-WAIT and mid-node; a restarted runner completes the run, and each
idempotent side effect is recorded once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo

import tests.utils.test_nodes  # noqa: F401 - registers ACTION.TEST, which the workflows here use
from loom.db import Database, DatabaseUrls, apply_migrations
from loom.engine.service import get_run, start_run
from loom.workflows.service import create_workflow
from tests.utils.engine import example
from tests.utils.pg import PgCluster
from tests.utils.sink import counting_sink

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def isolated(cluster: PgCluster) -> Iterator[tuple[Database, str]]:
    """A database of its own, so resume_all sees only this test's runs."""
    owner = cluster.create_database(f"rec_{uuid.uuid4().hex[:8]}")
    apply_migrations(owner)
    app = make_conninfo(owner, user="loom_app")
    with Database(DatabaseUrls(owner=owner, app=app, embedded=False)) as db:
        yield db, app


def _runner(app: str, blobs: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.utils.runner_proc", app, str(blobs), "resume"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _workspace(db: Database) -> uuid.UUID:
    ws = uuid.uuid4()
    with db.tenant(ws) as conn:
        conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'recovery')", (ws,))
    return ws


def _node(db: Database, ws: uuid.UUID, run_id: uuid.UUID, node_id: str) -> dict[str, Any]:
    return next(n for n in get_run(db, ws, run_id).nodes if n["node_id"] == node_id)


def test_kill_during_wait_then_restart_completes(
    isolated: tuple[Database, str], tmp_path: Path
) -> None:
    db, app = isolated
    ws = _workspace(db)
    flow = create_workflow(db, ws, example("wait")).workflow_id
    run_id = start_run(db, ws, flow, {"seconds": 2}).run_id
    first = _runner(app, tmp_path)
    _wait_for(lambda: _node(db, ws, run_id, "pause")["wake_at"] is not None)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    wake_at = _node(db, ws, run_id, "pause")["wake_at"]
    second = _runner(app, tmp_path)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert out.split() == ["SUCCESS"]
    detail = get_run(db, ws, run_id)
    assert detail.run["status"] == "SUCCESS"
    assert {n["node_id"]: n["status"] for n in detail.nodes} == {
        "start": "completed",
        "pause": "completed",
        "after": "completed",
    }
    assert detail.run["finished_at"] >= wake_at, "the wait was not cut short"
    assert detail.run["output"] == {"waited": 2, "then": {"seconds": 2}}


def test_kill_during_a_node_then_restart_records_side_effects_once(
    isolated: tuple[Database, str], tmp_path: Path
) -> None:
    db, app = isolated
    ws = _workspace(db)
    with counting_sink() as sink:

        def effect(node_id: str, sleep: float) -> dict[str, Any]:
            return {
                "id": node_id,
                "type": "ACTION",
                "subtype": "TEST",
                "parameters": {"sink_url": sink.url, "sleep": sleep, "value": node_id},
                "retry": {"max_attempts": 2},
            }

        definition = {
            "name": "side effects",
            "nodes": [
                {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
                effect("charge", 3),
                effect("receipt", 0),
            ],
            "edges": [{"from": "start", "to": "charge"}, {"from": "charge", "to": "receipt"}],
        }
        flow = create_workflow(db, ws, definition).workflow_id
        run_id = start_run(db, ws, flow, {}).run_id
        first = _runner(app, tmp_path)
        _wait_for(lambda: len(sink.deliveries) == 1)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert _node(db, ws, run_id, "charge")["status"] == "running"
        second = _runner(app, tmp_path)
        out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert out.split() == ["SUCCESS"]
    detail = get_run(db, ws, run_id)
    assert detail.run["output"] == "receipt"
    nodes = {n["node_id"]: n for n in detail.nodes}
    assert nodes["charge"]["recoveries"] == 1 and nodes["charge"]["attempt"] == 1
    charge_key = f"{nodes['charge']['id']}:1"
    assert [d["key"] for d in sink.deliveries].count(charge_key) == 2, "delivered again..."
    assert sink.keys == {charge_key, f"{nodes['receipt']['id']}:1"}, "...under the same key"
