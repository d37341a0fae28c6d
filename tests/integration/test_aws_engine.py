"""The Step Functions engine's own behaviour, in moto with the real entry points: Lambda
failures as node failures, large outputs in S3, one answer per task token, cancel, runs
that continue in a new execution, and the state transitions a node costs."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loom.db import Database
from loom.engine import hil
from loom.engine.run_state import Finished
from loom.engine.service import get_run, start_run
from loom.runtime.aws.dispatcher import StepFunctionsDispatcher
from loom.runtime.aws.hil import hand_answer
from loom.runtime.aws.platform import current_platform
from loom.workflows.service import create_workflow
from tests.utils.aws_engine import BUCKET, AwsEngine, aws_engine, transitions
from tests.utils.pg import PgCluster


@pytest.fixture
def workspace_db(database: Database, workspace: uuid.UUID) -> tuple[Database, uuid.UUID]:
    import tests.utils.test_nodes  # noqa: F401 - registers ACTION.TEST

    return database, workspace


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, cluster: PgCluster, tmp_path: Path) -> Iterator[AwsEngine]:
    with aws_engine(monkeypatch, cluster, tmp_path / "aws") as engine:
        yield engine


def _chain(*nodes: dict[str, Any]) -> dict[str, Any]:
    trigger = {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"}
    ids = ["start", *(n["id"] for n in nodes)]
    edges = [{"from": a, "to": b} for a, b in itertools.pairwise(ids)]
    return {"name": f"chain-{uuid.uuid4()}", "nodes": [trigger, *nodes], "edges": edges}


def _test(node_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "ACTION", "subtype": "TEST", "parameters": {}, **extra}


def _submit(
    db: Database, ws: uuid.UUID, definition: dict[str, Any], input: Any = None
) -> tuple[uuid.UUID, StepFunctionsDispatcher]:
    workflow_id = create_workflow(db, ws, definition).workflow_id
    run_id = start_run(db, ws, workflow_id, input or {}).run_id
    platform = current_platform()
    dispatcher = StepFunctionsDispatcher(platform.engine, platform.settings)
    dispatcher.submit(ws, run_id)
    return run_id, dispatcher


def _events(db: Database, ws: uuid.UUID, run_id: uuid.UUID) -> list[dict[str, Any]]:
    with db.tenant(ws) as conn:
        return conn.execute(
            "SELECT type, node_id, data FROM run_events WHERE run_id = %s ORDER BY seq", (run_id,)
        ).fetchall()


def test_a_lambda_timeout_is_a_node_failure_with_its_reason_and_is_retried(
    aws: AwsEngine, workspace_db: tuple[Database, uuid.UUID]
) -> None:
    db, ws = workspace_db
    aws.lambdas.fail_next("loom-node-action", "Sandbox.Timedout", "Task timed out after 900 s")
    retry = {"max_attempts": 2, "backoff_seconds": 0, "jitter": False}
    run_id, _ = _submit(db, ws, _chain(_test("slow", retry=retry)))
    assert aws.wait_for_run(run_id)[-1]["status"] == "SUCCEEDED"
    detail = get_run(db, ws, run_id)
    assert detail.run["status"] == "SUCCESS"
    assert {n["node_id"]: n["attempt"] for n in detail.nodes}["slow"] == 2
    retried = [e for e in _events(db, ws, run_id) if e["type"] == "node_retry_scheduled"]
    assert retried[0]["data"]["error"]["code"] == "function_timeout"
    assert "Task timed out after 900 s" in retried[0]["data"]["error"]["message"]


def test_out_of_memory_without_retries_fails_the_run_with_the_reason(
    aws: AwsEngine, workspace_db: tuple[Database, uuid.UUID]
) -> None:
    db, ws = workspace_db
    aws.lambdas.fail_next("loom-node-action", "Runtime.OutOfMemory", "Runtime exited")
    run_id, _ = _submit(db, ws, _chain(_test("big")))
    aws.wait_for_run(run_id)
    run = get_run(db, ws, run_id).run
    assert run["status"] == "ERROR"
    assert run["error"]["code"] == "function_out_of_memory"


def test_an_output_over_256_kib_goes_to_s3_and_only_its_reference_moves(
    aws: AwsEngine, workspace_db: tuple[Database, uuid.UUID]
) -> None:
    db, ws = workspace_db
    big = {
        "id": "big",
        "type": "ACTION",
        "subtype": "TRANSFORM",
        "parameters": {"value": "{% $pad('', 300000, 'x') %}"},
    }
    run_id, _ = _submit(db, ws, _chain(big, _test("after")))
    executions = aws.wait_for_run(run_id)
    detail = get_run(db, ws, run_id)
    assert detail.run["status"] == "SUCCESS"
    row = {n["node_id"]: n for n in detail.nodes}["after"]
    assert row["output"] is None and row["output_ref"].startswith(f"{ws}/runs/{run_id}/")
    assert detail.run["output_ref"] == row["output_ref"]
    stored = aws.s3.get_object(Bucket=BUCKET, Key=row["output_ref"])["Body"].read()
    assert json.loads(stored) == "x" * 300000
    history = aws.history(executions[-1]["executionArn"])
    largest = max(len(json.dumps(e, default=str)) for e in history)
    assert largest < 64 * 1024, "no state carried the output itself"


def _ask() -> dict[str, Any]:
    return _chain(
        {
            "id": "ask",
            "type": "HUMAN_IN_THE_LOOP",
            "subtype": "INPUT",
            "parameters": {"title": "How many?", "form": {"type": "integer"}},
        },
        _test("after"),
    )


def _wait_for_human(db: Database, ws: uuid.UUID, run_id: uuid.UUID) -> uuid.UUID:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pending = hil.list_requests(db, ws, status="pending", limit=10)
        mine = [r for r in pending if r["run_id"] == run_id]
        if mine and get_run(db, ws, run_id).run["status"] == "WAITING_FOR_HUMAN":
            return uuid.UUID(str(mine[0]["id"]))
        time.sleep(0.05)
    raise AssertionError("the run never waited for a person")


def test_a_task_token_works_once(aws: AwsEngine, workspace_db: tuple[Database, uuid.UUID]) -> None:
    db, ws = workspace_db
    run_id, dispatcher = _submit(db, ws, _ask())
    request_id = _wait_for_human(db, ws, run_id)
    answer = hil.respond(db, ws, request_id, approved=None, data=7, responded_by=None)
    report = answer.node_report()
    assert report is not None
    dispatcher.report(ws, *report)
    assert aws.wait_for_run(run_id)[-1]["status"] == "SUCCEEDED"
    assert get_run(db, ws, run_id).run["output"] == 7
    again = {
        "workspace_id": str(ws),
        "run_id": str(run_id),
        "finished": {"node_id": "ask", "attempt": 1, "outcome": "completed", "output": 8},
    }
    assert hand_answer(current_platform(), again) == {"delivered": False}
    assert get_run(db, ws, run_id).run["output"] == 7


def test_cancel_stops_the_execution_and_withdraws_the_request(
    aws: AwsEngine, workspace_db: tuple[Database, uuid.UUID]
) -> None:
    db, ws = workspace_db
    run_id, dispatcher = _submit(db, ws, _ask())
    request_id = _wait_for_human(db, ws, run_id)
    assert dispatcher.cancel(ws, run_id, "Not needed.").value == "CANCELLED"
    with db.tenant(ws) as conn:
        status = conn.execute("SELECT status FROM hil_requests WHERE id = %s", (request_id,))
        assert status.fetchone() == {"status": "cancelled"}
    # moto ends a stopped execution only when its waiting task returns (AWS at once), and
    # then inside a Map as FAILED rather than ABORTED: a late answer wakes it, and changes
    # nothing in the run.
    dispatcher.report(ws, run_id, Finished("ask", 1, "completed", output=1))
    assert aws.wait(aws.execution(run_id))["status"] in ("ABORTED", "FAILED")
    assert get_run(db, ws, run_id).run["status"] == "CANCELLED"


def test_starting_twice_starts_one_execution(
    aws: AwsEngine, workspace_db: tuple[Database, uuid.UUID]
) -> None:
    db, ws = workspace_db
    run_id, dispatcher = _submit(db, ws, _chain(_test("one")))
    dispatcher.submit(ws, run_id)
    aws.wait_for_run(run_id)
    listed = aws.sfn.list_executions(
        stateMachineArn=aws.execution(run_id)
        .rsplit(":", 1)[0]
        .replace(":execution:", ":stateMachine:")
    )
    assert [e["name"] for e in listed["executions"]].count(str(run_id)) == 1


def test_a_long_run_continues_in_new_executions(
    monkeypatch: pytest.MonkeyPatch,
    cluster: PgCluster,
    tmp_path: Path,
    workspace_db: tuple[Database, uuid.UUID],
) -> None:
    db, ws = workspace_db
    with aws_engine(monkeypatch, cluster, tmp_path, LOOM_HISTORY_EVENT_BUDGET="200") as aws:
        run_id, _ = _submit(db, ws, _chain(*(_test(f"n{i}") for i in range(8))))
        executions = aws.wait_for_run(run_id)
        names = [e["name"] for e in executions]
        assert names[0] == str(run_id) and names[1] == f"{run_id}-1", names
        assert all(e["status"] == "SUCCEEDED" for e in executions)
        assert get_run(db, ws, run_id).run["status"] == "SUCCESS"
        for execution in executions:
            assert len(aws.history(execution["executionArn"])) < 200


def test_a_sequential_task_node_costs_three_state_transitions(
    aws: AwsEngine, workspace_db: tuple[Database, uuid.UUID]
) -> None:
    db, ws = workspace_db
    run_id, _ = _submit(db, ws, _chain(*(_test(f"n{i}") for i in range(5))))
    execution = aws.wait_for_run(run_id)[-1]
    # The first "What next?"; per node Advance, "What next?" and its task; then the last
    # Advance, "What next?" and "Run finished".
    assert transitions(aws.history(execution["executionArn"])) == 1 + 3 * 5 + 3
