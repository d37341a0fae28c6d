"""Per-trigger EventBridge Scheduler schedules, through moto: deploying, publishing,
undeploying and deleting keep one schedule per deployed CRON trigger in step; a cron
EventBridge cannot express refuses the deploy; the schedule's invocation fires its
trigger once, however often it comes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from loom.config import get_settings
from loom.db import Database
from loom.errors import InvalidInput
from loom.runtime.aws import schedules
from loom.triggers import mirror
from loom.triggers.deploy import deploy, undeploy
from loom.workflows.service import create_workflow, delete_workflow, save_version
from tests.utils.aws_engine import ACCOUNT, REGION, AwsEngine, aws_engine, settle
from tests.utils.pg import PgCluster
from tests.utils.triggers import cron, flow, runs_of

GROUP = "loom-triggers"
TARGET = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:loom-schedule-fired"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/loom-scheduler"
DLQ = f"arn:aws:sqs:{REGION}:{ACCOUNT}:loom-jobs-dlq"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, cluster: PgCluster, tmp_path: Path) -> Iterator[AwsEngine]:
    monkeypatch.setattr(mirror, "MIRROR", None)  # installed below; put back afterwards
    with aws_engine(
        monkeypatch,
        cluster,
        tmp_path / "aws",
        LOOM_SCHEDULE_GROUP=GROUP,
        LOOM_SCHEDULE_TARGET_ARN=TARGET,
        LOOM_SCHEDULE_ROLE_ARN=ROLE,
        LOOM_SCHEDULE_DLQ_ARN=DLQ,
    ) as engine:
        boto3.client("scheduler", region_name=REGION).create_schedule_group(Name=GROUP)
        schedules.install(get_settings())  # what the API functions do on their first call
        yield engine
        settle(engine)


@pytest.fixture
def scheduler(aws: AwsEngine) -> Any:
    return boto3.client("scheduler", region_name=REGION)


def _trigger_id(database: Database, workspace: uuid.UUID, workflow_id: uuid.UUID) -> uuid.UUID:
    with database.tenant(workspace) as conn:
        row = conn.execute(
            "SELECT id FROM triggers WHERE workflow_id = %s AND subtype = 'CRON'", (workflow_id,)
        ).fetchone()
    assert row is not None
    found: uuid.UUID = row["id"]
    return found


def _schedule(scheduler: Any, trigger_id: uuid.UUID) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = scheduler.get_schedule(Name=f"loom-{trigger_id}", GroupName=GROUP)
    except scheduler.exceptions.ResourceNotFoundException:
        return None
    return found


def test_deploying_makes_the_triggers_schedule_and_undeploying_removes_it(
    scheduler: Any, database: Database, workspace: uuid.UUID
) -> None:
    definition = flow(cron("0 9 * * MON-FRI", timezone="Europe/Paris"))
    workflow_id = create_workflow(database, workspace, definition).workflow_id
    deploy(database, workspace, workflow_id)
    trigger_id = _trigger_id(database, workspace, workflow_id)
    found = _schedule(scheduler, trigger_id)
    assert found is not None
    assert found["ScheduleExpression"] == "cron(0 9 ? * MON-FRI *)"
    assert found["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert found["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = found["Target"]
    assert (target["Arn"], target["RoleArn"]) == (TARGET, ROLE)
    assert target["DeadLetterConfig"] == {"Arn": DLQ}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == schedules.RETRIES
    event = json.loads(target["Input"])
    assert event["workspace_id"] == str(workspace) and event["trigger_id"] == str(trigger_id)
    assert event["scheduled_time"] == "<aws.scheduler.scheduled-time>"

    deploy(database, workspace, workflow_id)  # again: the same schedule
    assert _schedule(scheduler, trigger_id) is not None

    definition["nodes"][0]["parameters"]["cron"] = "30 7 * * *"
    save_version(database, workspace, workflow_id, definition)  # publishing redeploys
    found = _schedule(scheduler, trigger_id)
    assert found is not None and found["ScheduleExpression"] == "cron(30 7 * * ? *)"

    undeploy(database, workspace, workflow_id)
    assert _schedule(scheduler, trigger_id) is None
    deploy(database, workspace, workflow_id)
    assert _schedule(scheduler, trigger_id) is not None
    delete_workflow(database, workspace, workflow_id)
    assert _schedule(scheduler, trigger_id) is None


def test_a_cron_eventbridge_cannot_express_refuses_the_deploy(
    scheduler: Any, database: Database, workspace: uuid.UUID
) -> None:
    workflow_id = create_workflow(database, workspace, flow(cron("0 9 1 * MON"))).workflow_id
    with pytest.raises(InvalidInput, match="cannot be scheduled on AWS: it sets both"):
        deploy(database, workspace, workflow_id)
    with database.tenant(workspace) as conn:
        row = conn.execute(
            "SELECT deployment_state FROM workflows WHERE id = %s", (workflow_id,)
        ).fetchone()
        bound = conn.execute(
            "SELECT count(*) AS n FROM triggers WHERE workflow_id = %s", (workflow_id,)
        ).fetchone()
    assert row is not None and row["deployment_state"] == "undeployed"
    assert bound is not None and bound["n"] == 0  # the deploy rolled back
    assert scheduler.list_schedules(GroupName=GROUP)["Schedules"] == []


def test_the_schedules_invocation_fires_its_trigger_once(
    aws: AwsEngine, scheduler: Any, database: Database, workspace: uuid.UUID
) -> None:
    workflow_id = create_workflow(database, workspace, flow(cron("* * * * *"))).workflow_id
    deploy(database, workspace, workflow_id)
    trigger_id = _trigger_id(database, workspace, workflow_id)
    due = datetime.now(UTC).replace(second=0, microsecond=0)
    with database.tenant(workspace) as conn:
        conn.execute(
            "UPDATE schedules SET next_fire_at = %s WHERE trigger_id = %s", (due, trigger_id)
        )
    found = _schedule(scheduler, trigger_id)
    assert found is not None
    event = json.loads(found["Target"]["Input"])
    event["scheduled_time"] = due.strftime("%Y-%m-%dT%H:%M:%SZ")  # EventBridge fills it in

    lambdas = boto3.client("lambda", region_name=REGION)
    for fired in (1, 0):  # a retried or repeated invocation fires nothing more
        reply = lambdas.invoke(FunctionName="loom-schedule-fired", Payload=json.dumps(event))
        assert json.loads(reply["Payload"].read()) == {"fired": fired}
    (run,) = runs_of(database, workspace, workflow_id)
    assert run["trigger"]["delivery_id"] == due.isoformat()
    assert aws.wait_for_run(run["id"])[-1]["status"] == "SUCCEEDED"
    with database.tenant(workspace) as conn:
        row = conn.execute(
            "SELECT next_fire_at FROM schedules WHERE trigger_id = %s", (trigger_id,)
        ).fetchone()
    assert row is not None and row["next_fire_at"] > due
    assert row["next_fire_at"] - due <= timedelta(minutes=2)
