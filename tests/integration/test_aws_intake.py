"""The SQS intake queue on AWS, through moto and the real entry points: the consumer
answers partial batch responses (only the records to try again fail), starts each event's
run once, turns an event's last attempt into a dead letter that replays through SQS, and
leaves unreadable messages to the DLQ, which the redrive worker empties."""

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
from loom.runtime.aws.sqs_queue import SqsQueue
from loom.triggers import dead_letters
from loom.triggers.deploy import deploy
from loom.triggers.events import TOPIC, TriggerEvent
from loom.triggers.wiring import queue_for
from loom.workflows.service import create_workflow
from tests.utils.aws_engine import ACCOUNT, REGION, AwsEngine, aws_engine, settle
from tests.utils.pg import PgCluster
from tests.utils.triggers import flow, runs_of, webhook

QUEUE = "loom-intake"
DLQ = "loom-intake-dlq"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{QUEUE}"
DLQ_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{DLQ}"
MAX_RECEIVES = 5


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, cluster: PgCluster, tmp_path: Path) -> Iterator[AwsEngine]:
    with aws_engine(
        monkeypatch,
        cluster,
        tmp_path / "aws",
        LOOM_INTAKE_QUEUE_URL=QUEUE_URL,
        LOOM_INTAKE_DLQ_URL=DLQ_URL,
        LOOM_INTAKE_MAX_ATTEMPTS=str(MAX_RECEIVES),
    ) as engine:
        sqs = boto3.client("sqs", region_name=REGION)
        sqs.create_queue(QueueName=DLQ)
        redrive = {
            "deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{DLQ}",
            "maxReceiveCount": str(MAX_RECEIVES),
        }
        sqs.create_queue(QueueName=QUEUE, Attributes={"RedrivePolicy": json.dumps(redrive)})
        yield engine
        settle(engine)


@pytest.fixture
def sqs(aws: AwsEngine) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def hook(database: Database, workspace: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """A deployed workflow with a WEBHOOK trigger: (workflow id, trigger id)."""
    workflow_id = create_workflow(database, workspace, flow(webhook())).workflow_id
    deploy(database, workspace, workflow_id)
    with database.tenant(workspace) as conn:
        row = conn.execute(
            "SELECT id FROM triggers WHERE workflow_id = %s", (workflow_id,)
        ).fetchone()
    assert row is not None
    return workflow_id, row["id"]


def _event(hook: tuple[uuid.UUID, uuid.UUID], delivery: str, n: int) -> dict[str, Any]:
    workflow_id, trigger_id = hook
    return TriggerEvent(
        trigger_id=trigger_id,
        workflow_id=workflow_id,
        node_id="t",
        subtype="WEBHOOK",
        delivery_id=delivery,
        input={"n": n},
        received_at=datetime.now(UTC),
    ).to_payload()


def _records(sqs: Any, expected: int) -> list[dict[str, Any]]:
    """The SQS event records Lambda's event source mapping would hand the consumer."""
    found: list[dict[str, Any]] = []
    while len(found) < expected:
        page = sqs.receive_message(
            QueueUrl=QUEUE_URL,
            MaxNumberOfMessages=10,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        assert page, f"{len(found)} of {expected} messages in the queue"
        found += page
    return [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m["Attributes"],
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}",
            "awsRegion": REGION,
        }
        for m in found
    ]


def _consume(records: list[dict[str, Any]]) -> list[str]:
    """Invoke the consumer with a batch; the ids of the records it wants again."""
    reply = boto3.client("lambda", region_name=REGION).invoke(
        FunctionName="loom-intake-consumer", Payload=json.dumps({"Records": records}).encode()
    )
    payload = reply["Payload"].read()
    assert "FunctionError" not in reply, payload
    return [f["itemIdentifier"] for f in json.loads(payload)["batchItemFailures"]]


def _queue(database: Database) -> SqsQueue:
    return SqsQueue(database, QUEUE_URL, max_attempts=MAX_RECEIVES)


def _depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_the_intake_queue_is_sqs_when_configured(aws: AwsEngine, database: Database) -> None:
    assert isinstance(queue_for(get_settings(), database), SqsQueue)


def test_a_batch_starts_each_events_run_once_however_often_it_arrives(
    aws: AwsEngine, sqs: Any, database: Database, workspace: uuid.UUID, hook: Any
) -> None:
    queue = _queue(database)
    for n in range(3):
        queue.send(workspace, TOPIC, _event(hook, f"delivery-{n}", n))
    queue.send(workspace, TOPIC, _event(hook, "delivery-0", 0))  # the same delivery again
    records = _records(sqs, 4)
    assert _consume(records) == []
    assert _consume(records[:2]) == []  # SQS delivers at least once: a batch again
    runs = runs_of(database, workspace, hook[0])
    assert sorted(r["input"]["n"] for r in runs) == [0, 1, 2]
    for run in runs:
        assert aws.wait_for_run(run["id"])[-1]["status"] == "SUCCEEDED"
    assert aws.lambdas.calls["loom-advance"] >= 3


def test_only_the_poison_record_fails_and_lands_in_the_dlq_which_redrive_empties(
    aws: AwsEngine, sqs: Any, database: Database, workspace: uuid.UUID, hook: Any
) -> None:
    queue = _queue(database)
    queue.send(workspace, TOPIC, _event(hook, "good-1", 1))
    sqs.send_message(QueueUrl=QUEUE_URL, MessageBody="{not json")
    queue.send(workspace, TOPIC, _event(hook, "good-2", 2))
    records = _records(sqs, 3)
    (poison,) = [r for r in records if r["body"] == "{not json"]
    assert _consume(records) == [poison["messageId"]]
    runs = runs_of(database, workspace, hook[0])
    assert sorted(r["input"]["n"] for r in runs) == [1, 2]
    for run in runs:
        assert aws.wait_for_run(run["id"])[-1]["status"] == "SUCCEEDED"

    for receive in range(2, MAX_RECEIVES + 1):  # each receive fails it again
        sqs.change_message_visibility(
            QueueUrl=QUEUE_URL, ReceiptHandle=poison["receiptHandle"], VisibilityTimeout=0
        )
        (poison,) = _records(sqs, 1)
        assert poison["attributes"]["ApproximateReceiveCount"] == str(receive)
        assert _consume([poison]) == [poison["messageId"]]
    sqs.change_message_visibility(
        QueueUrl=QUEUE_URL, ReceiptHandle=poison["receiptHandle"], VisibilityTimeout=0
    )
    assert sqs.receive_message(QueueUrl=QUEUE_URL).get("Messages", []) == []  # moved
    assert _depth(sqs, DLQ_URL) == 1

    reply = boto3.client("lambda", region_name=REGION).invoke(FunctionName="loom-redrive")
    assert json.loads(reply["Payload"].read()) == {"moved": 1}
    assert _depth(sqs, DLQ_URL) == 0
    (back,) = sqs.receive_message(QueueUrl=QUEUE_URL)["Messages"]
    assert back["Body"] == "{not json"


def test_an_events_last_attempt_becomes_a_dead_letter_that_replays_through_sqs(
    aws: AwsEngine, sqs: Any, database: Database, workspace: uuid.UUID, hook: Any
) -> None:
    broken = _event(hook, "broken", 7)
    del broken["input"]  # the handler fails on it: retryable, as any bug
    _queue(database).send(workspace, TOPIC, broken)
    (record,) = _records(sqs, 1)
    assert _consume([record]) == [record["messageId"]]  # first attempt: try again
    assert dead_letters.list_dead_letters(database, workspace) == []

    record["attributes"]["ApproximateReceiveCount"] = str(MAX_RECEIVES)  # its last receive
    assert _consume([record]) == []  # handled: it is a dead letter now, not an SQS retry
    (dead,) = dead_letters.list_dead_letters(database, workspace)
    assert dead["topic"] == TOPIC and dead["payload"] == broken
    assert dead["attempts"] == MAX_RECEIVES and "KeyError" in dead["error"]
    assert runs_of(database, workspace, hook[0]) == []

    event_id = dead_letters.replay(
        database, queue_for(get_settings(), database), workspace, dead["id"]
    )
    (again,) = _records(sqs, 1)
    body = json.loads(again["body"])
    assert body["event_id"] == event_id and body["payload"] == broken and body["attempts"] == 0


def test_a_held_event_that_fails_is_sent_with_its_backoff(
    aws: AwsEngine, sqs: Any, database: Database, workspace: uuid.UUID, hook: Any
) -> None:
    queue = _queue(database)
    held = queue.send(workspace, TOPIC, _event(hook, "held", 3), hold=True)
    assert _depth(sqs, QUEUE_URL) == 0  # its sender handles it
    assert queue.fail(held, "database away", retryable=True) is None
    assert _depth(sqs, QUEUE_URL) == 1
    assert sqs.receive_message(QueueUrl=QUEUE_URL).get("Messages", []) == []  # delayed


def test_a_waiting_event_goes_back_delayed_without_spending_an_attempt(
    aws: AwsEngine, sqs: Any, database: Database, workspace: uuid.UUID, hook: Any
) -> None:
    queue = _queue(database)
    held = queue.send(workspace, TOPIC, _event(hook, "waits", 4), hold=True)
    queue.wait(held, datetime.now(UTC) + timedelta(seconds=30), hook[0])
    assert sqs.receive_message(QueueUrl=QUEUE_URL).get("Messages", []) == []  # delayed
    attributes = sqs.get_queue_attributes(
        QueueUrl=QUEUE_URL, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    sqs.purge_queue(QueueUrl=QUEUE_URL)
    queue.wait(held, datetime.now(UTC), hook[0])  # due now: visible at once
    (record,) = _records(sqs, 1)
    assert json.loads(record["body"])["attempts"] == 0


def test_a_held_event_sqs_refuses_is_kept_as_a_dead_letter(
    aws: AwsEngine, database: Database, workspace: uuid.UUID, hook: Any
) -> None:
    gone = SqsQueue(database, QUEUE_URL + "-deleted", max_attempts=MAX_RECEIVES)
    event = _event(hook, "refused", 5)
    held = gone.send(workspace, TOPIC, event, hold=True)
    dead_letter_id = gone.fail(held, "database away", retryable=True)
    (dead,) = dead_letters.list_dead_letters(database, workspace)
    assert dead["id"] == dead_letter_id and dead["payload"] == event
    assert dead["error"].startswith("database away; the intake queue refused it:")


def test_a_consumer_may_also_poll_the_queue(
    aws: AwsEngine, sqs: Any, database: Database, workspace: uuid.UUID, hook: Any
) -> None:
    queue = _queue(database)
    for n in range(2):
        queue.send(workspace, TOPIC, _event(hook, f"polled-{n}", n))
    assert queue.receive(["other.topic"], 10) == []  # left for their consumer
    first, second = sorted(queue.receive([TOPIC], 10), key=lambda m: m.payload["input"]["n"])
    assert (first.attempts, first.max_attempts) == (2, MAX_RECEIVES)  # SQS counts receives
    queue.ack(first)
    assert queue.fail(second, "try later", retryable=True) is None  # back after its backoff
    assert _depth(sqs, QUEUE_URL) == 1
    assert queue.receive([TOPIC], 10) == []
