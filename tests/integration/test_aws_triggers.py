"""The minute jobs EventBridge Scheduler invokes on AWS, through moto and the real entry
points: a due CRON trigger starts one run that Step Functions drives, however often the
job runs; queued intake events start their runs when the queue is drained; a run that was
committed but never handed to Step Functions is started a minute later, once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from loom.db import Database
from loom.engine.service import start_run
from loom.runtime.aws.platform import current_platform
from loom.triggers.deploy import deploy
from loom.triggers.events import TOPIC, TriggerEvent
from loom.triggers.queue import PostgresQueue
from loom.workflows.service import create_workflow
from tests.utils.aws_engine import REGION, AwsEngine, aws_engine
from tests.utils.pg import PgCluster
from tests.utils.triggers import cron, flow, runs_of, webhook


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, cluster: PgCluster, tmp_path: Path) -> Iterator[AwsEngine]:
    with aws_engine(monkeypatch, cluster, tmp_path / "aws") as engine:
        yield engine


def _invoke(function: str) -> dict[str, Any]:
    reply = boto3.client("lambda", region_name=REGION).invoke(FunctionName=function)
    assert "FunctionError" not in reply, reply["Payload"].read()
    found: dict[str, Any] = json.loads(reply["Payload"].read())
    return found


def test_a_due_cron_trigger_starts_one_run_on_step_functions(
    aws: AwsEngine, database: Database, workspace: uuid.UUID
) -> None:
    workflow_id = create_workflow(database, workspace, flow(cron("* * * * *"))).workflow_id
    deploy(database, workspace, workflow_id)
    with database.tenant(workspace) as conn:
        conn.execute(
            "UPDATE schedules SET next_fire_at = now() - interval '1 second' "
            "WHERE trigger_id IN (SELECT id FROM triggers WHERE workflow_id = %s)",
            (workflow_id,),
        )
    # The database is shared with other tests, whose minute schedules may be due too:
    # count this workflow's runs rather than the job's total.
    assert _invoke("loom-schedule-fired")["fired"] >= 1
    assert len(runs_of(database, workspace, workflow_id)) == 1
    _invoke("loom-schedule-fired")
    (run,) = runs_of(database, workspace, workflow_id)
    execution = aws.wait_for_run(run["id"])[-1]
    assert execution["status"] == "SUCCEEDED"
    (run,) = runs_of(database, workspace, workflow_id)
    assert run["status"] == "SUCCESS" and run["trigger"]["type"] == "cron"


def test_queued_intake_events_start_their_runs(
    aws: AwsEngine, database: Database, workspace: uuid.UUID
) -> None:
    workflow_id = create_workflow(database, workspace, flow(webhook())).workflow_id
    deploy(database, workspace, workflow_id)
    with database.tenant(workspace) as conn:
        row = conn.execute(
            "SELECT id FROM triggers WHERE workflow_id = %s", (workflow_id,)
        ).fetchone()
    assert row is not None
    trigger_id = row["id"]
    event = TriggerEvent(
        trigger_id=trigger_id,
        workflow_id=workflow_id,
        node_id="t",
        subtype="WEBHOOK",
        delivery_id="delivery-1",
        input={"n": 1},
        received_at=datetime.now(UTC) - timedelta(seconds=5),
    )
    PostgresQueue(database).send(workspace, TOPIC, event.to_payload())
    assert _invoke("loom-intake")["handled"] >= 1
    (run,) = runs_of(database, workspace, workflow_id)
    assert aws.wait_for_run(run["id"])[-1]["status"] == "SUCCEEDED"
    (run,) = runs_of(database, workspace, workflow_id)
    assert run["status"] == "SUCCESS" and run["input"] == {"n": 1}


def test_a_run_never_handed_to_step_functions_is_started_a_minute_later(
    aws: AwsEngine, database: Database, workspace: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow_id = create_workflow(database, workspace, flow(webhook())).workflow_id
    # Committed, then the start of their executions lost (as if StartExecution failed).
    stranded = start_run(database, workspace, workflow_id, {"n": 2}).run_id
    recent = start_run(database, workspace, workflow_id, {"n": 3}).run_id
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    with database.tenant(workspace) as conn:
        for run_id, created in ((stranded, long_ago), (recent, long_ago + timedelta(seconds=30))):
            conn.execute("UPDATE runs SET created_at = %s WHERE id = %s", (created, run_id))
    # The job's clock: 75 s after the first, 45 s after the second. Other tests' runs, all
    # created since 2001, are too recent for it.
    later = long_ago + timedelta(seconds=75)
    monkeypatch.setattr(current_platform().engine, "clock", lambda: later)

    assert _invoke("loom-stranded-runs") == {"started": 1, "failed": 0}
    assert aws.wait_for_run(stranded)[-1]["status"] == "SUCCEEDED"
    states = {run["id"]: run for run in runs_of(database, workspace, workflow_id)}
    assert states[stranded]["status"] == "SUCCESS" and states[stranded]["input"] == {"n": 2}
    assert states[recent]["status"] == "NEW"  # not a minute old: its start may be in flight
    assert _invoke("loom-stranded-runs") == {"started": 0, "failed": 0}
