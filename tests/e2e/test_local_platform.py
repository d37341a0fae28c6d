"""`loom up` hosts the engine: it resumes active runs when it starts, and a clean stop
leaves unfinished runs resumable, not cancelled."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

from psycopg.conninfo import make_conninfo

from loom.db import Database, DatabaseUrls, apply_migrations
from loom.engine.service import get_run, start_run
from loom.workflows.service import create_workflow
from tests.utils.engine import example
from tests.utils.pg import PgCluster
from tests.utils.procs import LOOM, cli_env, free_port, wait_healthy


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
        proc = subprocess.Popen(
            [*LOOM, "up", "--port", str(port)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}/v1/public/health", proc)
            deadline = time.monotonic() + 30
            while _status(db, ws, quick) != "SUCCESS" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _status(db, ws, quick) == "SUCCESS"
            assert _status(db, ws, slow) == "RUNNING"
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        detail = get_run(db, ws, slow)
        assert detail.run["status"] == "RUNNING", "a clean stop does not cancel runs"
        pause = next(n for n in detail.nodes if n["node_id"] == "pause")
        assert pause["status"] == "running" and pause["wake_at"] is not None
