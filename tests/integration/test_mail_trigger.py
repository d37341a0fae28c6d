"""TRIGGER.EMAIL through the local SMTP listener on loopback: a message to a deployed
trigger's address starts a run with the parsed mail; anything else is refused."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from loom.db import Database
from loom.errors import LoomError
from loom.runtime.local.mail_listener import MailListener
from loom.triggers.deploy import deploy, undeploy
from loom.triggers.wiring import receiver_for
from loom.workflows.service import create_workflow
from tests.utils.api import test_settings
from tests.utils.procs import free_port
from tests.utils.triggers import RecordingDispatcher, flow, runs_of


@pytest.fixture
def listener(database: Database, tmp_path: Path) -> Iterator[MailListener]:
    settings = test_settings(tmp_path)
    receiver = receiver_for(settings, database, RecordingDispatcher())
    mail = MailListener(receiver, host="127.0.0.1", port=free_port(), max_bytes=64 * 1024)
    mail.start()
    yield mail
    mail.stop()


def _message(to: str, sender: str = "ada@example.com", message_id: str = "") -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Ada <{sender}>"
    message["To"] = to
    message["Subject"] = "Invoice 42"
    message["Message-ID"] = message_id or f"<{uuid.uuid4()}@example.com>"
    message.set_content("Please pay.")
    message.add_alternative("<p>Please <b>pay</b>.</p>", subtype="html")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="i.pdf")
    return message


def _send(listener: MailListener, message: EmailMessage, sender: str = "ada@example.com") -> None:
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as smtp:
        smtp.send_message(message, from_addr=sender)


def test_mail_to_a_deployed_trigger_starts_a_run(
    listener: MailListener, database: Database, workspace: uuid.UUID
) -> None:
    trigger = {"subtype": "EMAIL", "parameters": {"allowed_senders": ["@example.com"]}}
    workflow_id = create_workflow(database, workspace, flow(trigger)).workflow_id
    deploy(database, workspace, workflow_id)
    with database.tenant(workspace) as conn:
        row = conn.execute("SELECT id FROM triggers WHERE workflow_id = %s", (workflow_id,))
        trigger_id = row.fetchone()["id"]  # type: ignore[index]
    address = f"{trigger_id}@loom.localhost"
    message = _message(address, message_id="<m-1@example.com>")
    _send(listener, message)
    _send(listener, message)  # the same Message-ID again: accepted, but starts nothing
    [run] = runs_of(database, workspace, workflow_id)
    mail = run["input"]
    assert mail["from"] == "ada@example.com" and mail["to"] == [address]
    assert mail["subject"] == "Invoice 42" and mail["message_id"] == "<m-1@example.com>"
    assert mail["text"].strip() == "Please pay." and "<b>pay</b>" in mail["html"]
    assert mail["attachments"] == [
        {"filename": "i.pdf", "content_type": "application/pdf", "size": 8}
    ]
    assert run["trigger"]["type"] == "email"

    with pytest.raises(smtplib.SMTPDataError) as refused:
        _send(listener, _message(address, sender="eve@evil.test"), sender="eve@evil.test")
    assert refused.value.smtp_code == 550

    undeploy(database, workspace, workflow_id)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        _send(listener, _message(address))
    assert len(runs_of(database, workspace, workflow_id)) == 1


def test_unknown_addresses_are_refused(listener: MailListener) -> None:
    for address in (f"{uuid.uuid4()}@loom.localhost", "someone@loom.localhost"):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            _send(listener, _message(address))
        [(code, _)] = refused.value.recipients.values()
        assert code == 550


def test_the_listener_refuses_a_port_in_use(database: Database, tmp_path: Path) -> None:
    receiver = receiver_for(test_settings(tmp_path), database, RecordingDispatcher())
    first = MailListener(receiver, host="127.0.0.1", port=free_port(), max_bytes=1024)
    first.start()
    try:
        second = MailListener(receiver, host="127.0.0.1", port=first.port, max_bytes=1024)
        with pytest.raises(LoomError, match="cannot listen") as refused:
            second.start()
        assert "LOOM_SMTP_PORT" in refused.value.solution
        second.stop()  # stopping what never started is fine
    finally:
        first.stop()
