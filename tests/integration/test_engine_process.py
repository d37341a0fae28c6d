"""``loom up``'s engine in a process of its own: runs handed over from the API process run
there, a run handed over twice runs its nodes once, cancel answers through it, and a killed
engine process is restarted and finishes what it had."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loom.db import Database
from loom.engine.service import get_run, start_run
from loom.engine.states import RunStatus
from loom.runtime.local.engine_process import EngineProcess
from loom.runtime.local.platform import build_engine
from loom.workflows.service import create_workflow
from tests.utils.api import test_settings
from tests.utils.engine import example
from tests.utils.pg import PgCluster
from tests.utils.sink import Sink, counting_sink
from tests.utils.triggers import isolated_database, wait_until


@pytest.fixture
def db(cluster: PgCluster) -> Iterator[Database]:
    """A database of its own: the engine process resumes every active run it finds."""
    with isolated_database(cluster, "engproc") as database:
        yield database


@pytest.fixture
def engine(db: Database, tmp_path: Path) -> Iterator[EngineProcess]:
    process = EngineProcess(
        test_settings(tmp_path, hil_sweep_seconds=0.2, agent_exam_interval_seconds=0),
        db.urls,
        restart_delays=(0.2,),
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def sink() -> Iterator[Sink]:
    with counting_sink() as found:
        yield found


def _workspace(db: Database, *allowed: str) -> uuid.UUID:
    workspace_id = uuid.uuid4()
    with db.tenant(workspace_id) as conn:
        conn.execute(
            "INSERT INTO workspaces (id, name, settings) VALUES (%s, 'engine process', %s)",
            (workspace_id, json.dumps({"outbound_allowlist": list(allowed)})),
        )
    return workspace_id


def _status(db: Database, workspace_id: uuid.UUID, run_id: uuid.UUID) -> str:
    return str(get_run(db, workspace_id, run_id).run["status"])


def _succeeded(db: Database, workspace_id: uuid.UUID, run_id: uuid.UUID) -> Callable[[], bool]:
    return lambda: _status(db, workspace_id, run_id) == "SUCCESS"


def _node(db: Database, workspace_id: uuid.UUID, run_id: uuid.UUID, node_id: str) -> Any:
    return next(n for n in get_run(db, workspace_id, run_id).nodes if n["node_id"] == node_id)


def _post_to(sink: Sink) -> dict[str, Any]:
    return {
        "name": "one delivery",
        "nodes": [
            {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
            {
                "id": "deliver",
                "type": "ACTION",
                "subtype": "HTTP_REQUEST",
                "parameters": {
                    "method": "POST",
                    "url": sink.url,
                    "body": {"type": "json", "value": {"key": "{% $input.key %}"}},
                },
            },
        ],
        "edges": [{"from": "start", "to": "deliver"}],
    }


def test_a_handed_over_run_runs_in_the_engine_process(db: Database, engine: EngineProcess) -> None:
    workspace_id = _workspace(db)
    flow = create_workflow(db, workspace_id, example("transform")).workflow_id
    run_id = start_run(db, workspace_id, flow, {"customer": {"name": "ada"}, "lines": []}).run_id
    engine.submit(workspace_id, run_id)
    wait_until(_succeeded(db, workspace_id, run_id), 60, "the run to succeed")
    assert engine.pid is not None and engine.pid != os.getpid()


def test_a_run_handed_over_many_times_runs_its_nodes_once(
    db: Database, engine: EngineProcess, sink: Sink
) -> None:
    workspace_id = _workspace(db, sink.url.split("/")[2])
    flow = create_workflow(db, workspace_id, _post_to(sink)).workflow_id
    run_ids = [start_run(db, workspace_id, flow, {"key": n}).run_id for n in range(5)]
    # Before the engine is ready the hand-overs race the resume of every active run.
    for _ in range(3):
        for run_id in run_ids:
            engine.submit(workspace_id, run_id)
    for run_id in run_ids:
        wait_until(_succeeded(db, workspace_id, run_id), 60, "the run to succeed")
    assert engine.ready.is_set()
    time.sleep(0.5)  # room for a second delivery, were there one
    assert sorted(d["key"] for d in sink.deliveries) == list(range(5))


def test_a_resume_racing_a_hand_over_leaves_the_run_it_drives_alone(
    db: Database, tmp_path: Path
) -> None:
    _, runner = build_engine(test_settings(tmp_path), db)
    workspace_id = _workspace(db)
    flow = create_workflow(db, workspace_id, example("wait")).workflow_id
    run_id = start_run(db, workspace_id, flow, {"seconds": 1}).run_id

    def waiting() -> bool:
        return _node(db, workspace_id, run_id, "pause")["wake_at"] is not None

    async def race() -> None:
        driving = asyncio.create_task(runner.drive(workspace_id, run_id))
        while not await asyncio.to_thread(waiting):
            await asyncio.sleep(0.02)
        assert await runner.resume_all() == []
        assert (await driving).status is RunStatus.SUCCESS

    asyncio.run(race())
    assert _node(db, workspace_id, run_id, "pause")["recoveries"] == 0


def test_cancel_is_answered_through_the_engine_process(db: Database, engine: EngineProcess) -> None:
    workspace_id = _workspace(db)
    flow = create_workflow(db, workspace_id, example("wait")).workflow_id
    run_id = start_run(db, workspace_id, flow, {"seconds": 3600}).run_id
    engine.submit(workspace_id, run_id)
    wait_until(lambda: _status(db, workspace_id, run_id) == "RUNNING", 60, "the run to start")
    assert engine.cancel(workspace_id, run_id, "No longer needed.") is RunStatus.CANCELLED
    assert _status(db, workspace_id, run_id) == "CANCELLED"


def test_a_killed_engine_process_is_restarted_and_finishes_its_runs(
    db: Database, engine: EngineProcess
) -> None:
    workspace_id = _workspace(db)
    flow = create_workflow(db, workspace_id, example("wait")).workflow_id
    waiting = start_run(db, workspace_id, flow, {"seconds": 2}).run_id
    engine.submit(workspace_id, waiting)
    wait_until(
        lambda: _status(db, workspace_id, waiting) == "RUNNING" and engine.ready.is_set(),
        60,
        "the run to start",
    )
    first = engine.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    # Handed over while no engine runs: the restarted one picks it up.
    meanwhile = start_run(db, workspace_id, flow, {"seconds": 0}).run_id
    engine.submit(workspace_id, meanwhile)
    wait_until(lambda: engine.restarts == 1 and engine.ready.is_set(), 60, "a restart")
    assert engine.pid != first
    for run_id in (waiting, meanwhile):
        wait_until(_succeeded(db, workspace_id, run_id), 60, "the run to succeed")
    assert get_run(db, workspace_id, waiting).run["output"] == {
        "waited": 2,
        "then": {"seconds": 2},
    }


def test_stop_ends_the_engine_process(db: Database, tmp_path: Path) -> None:
    engine = EngineProcess(test_settings(tmp_path), db.urls)
    engine.start()
    wait_until(engine.ready.is_set, 60, "the engine to be ready")
    pid = engine.pid
    assert pid is not None
    engine.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
