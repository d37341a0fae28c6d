"""Inbound email on AWS, through moto and the real entry point: SES has stored the
message in S3 and invokes the mail function with its envelope; a recipient naming a
deployed EMAIL trigger starts one run on Step Functions, however often SES retries, and
others are dropped."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from loom.db import Database
from loom.runtime.aws.mail import PREFIX
from loom.triggers.deploy import deploy
from loom.workflows.service import create_workflow
from stacks.triggers import MAIL_PREFIX
from tests.utils.aws_engine import REGION, AwsEngine, aws_engine, settle
from tests.utils.pg import PgCluster
from tests.utils.triggers import flow, runs_of

BUCKET = "loom-mail-test"
DOMAIN = "mail.example.com"
MESSAGE = (
    b"From: Ada <ada@example.com>\r\nTo: {to}\r\nSubject: invoice 42\r\n"
    b"Message-ID: <invoice-42@example.com>\r\n\r\nplease pay\r\n"
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, cluster: PgCluster, tmp_path: Path) -> Iterator[AwsEngine]:
    with aws_engine(
        monkeypatch, cluster, tmp_path / "aws", LOOM_MAIL_BUCKET=BUCKET, LOOM_MAIL_DOMAIN=DOMAIN
    ) as engine:
        engine.s3.create_bucket(Bucket=BUCKET)
        yield engine
        settle(engine)


def _ses_event(message_id: str, sender: str, recipients: list[str]) -> dict[str, Any]:
    """What an SES receipt rule's Lambda action sends (the parts Loom reads)."""
    return {
        "Records": [
            {
                "eventSource": "aws:ses",
                "ses": {
                    "mail": {
                        "messageId": message_id,
                        "source": sender,
                        "timestamp": "2026-11-21T10:00:00.000Z",
                        "destination": recipients,
                    },
                    "receipt": {"recipients": recipients, "action": {"type": "Lambda"}},
                },
            }
        ]
    }


def _invoke(event: dict[str, Any]) -> dict[str, Any]:
    reply = boto3.client("lambda", region_name=REGION).invoke(
        FunctionName="loom-mail-received", Payload=json.dumps(event).encode()
    )
    payload = reply["Payload"].read()
    assert "FunctionError" not in reply, payload
    found: dict[str, Any] = json.loads(payload)
    return found


def _deployed_mail_trigger(database: Database, workspace: uuid.UUID) -> tuple[uuid.UUID, str]:
    """A deployed workflow with an EMAIL trigger for @example.com; its id and address."""
    trigger = {"subtype": "EMAIL", "parameters": {"allowed_senders": ["@example.com"]}}
    workflow_id = create_workflow(database, workspace, flow(trigger)).workflow_id
    deploy(database, workspace, workflow_id)
    with database.tenant(workspace) as conn:
        row = conn.execute(
            "SELECT id FROM triggers WHERE workflow_id = %s", (workflow_id,)
        ).fetchone()
    assert row is not None
    return workflow_id, f"{row['id']}@{DOMAIN}"


def test_the_stack_stores_mail_where_the_function_reads_it() -> None:
    assert MAIL_PREFIX == PREFIX


def test_mail_to_an_email_trigger_starts_one_run(
    aws: AwsEngine, database: Database, workspace: uuid.UUID
) -> None:
    workflow_id, address = _deployed_mail_trigger(database, workspace)
    stranger = f"{uuid.uuid4()}@{DOMAIN}"
    raw = MESSAGE.replace(b"{to}", address.encode())
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + "ses-message-1", Body=raw)

    event = _ses_event("ses-message-1", "ada@example.com", [address, stranger, "postmaster@x"])
    assert _invoke(event) == {
        "recipients": {address: "started", stranger: "refused", "postmaster@x": "refused"}
    }
    assert _invoke(event)["recipients"][address] == "duplicate"  # SES or Lambda retried
    (run,) = runs_of(database, workspace, workflow_id)
    assert run["trigger"]["type"] == "email"
    assert run["input"]["subject"] == "invoice 42" and "please pay" in run["input"]["text"]
    assert aws.wait_for_run(run["id"])[-1]["status"] == "SUCCEEDED"


def test_a_sender_the_trigger_does_not_allow_starts_nothing(
    aws: AwsEngine, database: Database, workspace: uuid.UUID
) -> None:
    workflow_id, address = _deployed_mail_trigger(database, workspace)
    raw = MESSAGE.replace(b"ada@example.com", b"eve@evil.test").replace(b"{to}", address.encode())
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + "ses-message-2", Body=raw)
    event = _ses_event("ses-message-2", "eve@evil.test", [address])
    assert _invoke(event) == {"recipients": {address: "refused"}}
    assert runs_of(database, workspace, workflow_id) == []
