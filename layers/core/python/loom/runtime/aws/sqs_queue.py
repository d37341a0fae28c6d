"""``EventQueue`` on SQS: the intake queue on AWS, whose redrive policy moves a message
that keeps failing to its dead-letter queue.

- A message's body is its event and the attempts made before it was sent; its attempts
  when received add SQS's ``ApproximateReceiveCount``.
- ``send(hold=True)`` sends nothing: the sender handles the event at once, and only a
  wait or a failure sends it, delayed (at most SQS's 15 minutes). SQS cannot join the
  caller's transaction: a message is sent when asked, so one that outlives a rolled-back
  transaction starts its run at most once (the run's key is the event's).
- SQS does not deduplicate a standard queue, so ``send`` always sends: a duplicate
  starts nothing, as above.
- ``wait`` (a workflow's lease is held) sends a delayed copy and drops the original, so
  waiting spends no attempt; nothing hears a lease's release, so a waiting event looks
  again after ``intake.RECHECK`` at most.
- ``fail``: a retry makes the message visible again after the backoff; the last attempt,
  or one that retrying cannot help, becomes a row of ``dead_letters``
  (``GET /v1/dead-letters``, replayable) and leaves the queue. A message that cannot even
  be read, or whose dead letter cannot be written, stays until SQS moves it to the DLQ.
  A held message SQS refuses becomes a dead letter too: it exists nowhere else.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from loom.db import queue as repo
from loom.db.database import Conn, Database
from loom.runtime.aws.clients import client
from loom.triggers.queue import MAX_BACKOFF_SECONDS, Message

log = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 900  # SQS's longest DelaySeconds
MAX_BATCH = 10  # SQS's largest receive and send batch


def delay_seconds(seconds: float) -> int:
    return max(0, min(MAX_DELAY_SECONDS, int(seconds + 0.999)))


class SqsQueue:
    def __init__(
        self,
        db: Database,
        url: str,
        *,
        max_attempts: int = 5,
        retry_seconds: float = 2.0,
        delete_received: bool = True,
    ) -> None:
        """``delete_received``: False when Lambda's event source mapping deletes the
        records its batch reports handled."""
        self.db = db
        self.url = url
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.delete_received = delete_received
        self._receipts: dict[int, str] = {}

    def send(
        self,
        workspace_id: UUID,
        topic: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        hold: bool = False,
        within: Conn | None = None,
    ) -> Message:
        message = Message(
            id=secrets.randbits(53),  # a number JSON clients keep exactly
            workspace_id=workspace_id,
            topic=topic,
            payload=payload,
            attempts=1 if hold else 0,
            max_attempts=self.max_attempts,
        )
        if not hold:
            self._send(message)
        return message

    def accept(self, body: str, receive_count: int, receipt: str) -> Message:
        """The message a received SQS message carries, held by this queue until settled;
        ``ValueError`` or ``KeyError`` when its body is not one."""
        data = json.loads(body)
        message = Message(
            id=int(data["event_id"]),
            workspace_id=UUID(data["workspace_id"]),
            topic=str(data["topic"]),
            payload=dict(data["payload"]),
            attempts=int(data["attempts"]) + receive_count,
            max_attempts=self.max_attempts,
        )
        self._receipts[message.id] = receipt
        return message

    def receive(self, topics: Sequence[str], limit: int) -> list[Message]:
        reply = client("sqs").receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(limit, MAX_BATCH)),
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        held = []
        for found in reply.get("Messages", []):
            count = int(found["Attributes"]["ApproximateReceiveCount"])
            message = self.accept(found["Body"], count, found["ReceiptHandle"])
            if message.topic in topics:
                held.append(message)
            else:  # not this consumer's: let another have it now
                self._visible_in(self._receipts.pop(message.id), 0)
        return held

    def ack(self, message: Message) -> None:
        receipt = self._receipts.pop(message.id, None)
        if receipt is not None and self.delete_received:
            client("sqs").delete_message(QueueUrl=self.url, ReceiptHandle=receipt)

    def wait(self, message: Message, until: datetime, workflow_id: UUID) -> None:
        waited = (until - datetime.now(UTC)).total_seconds()
        again = replace(message, attempts=max(message.attempts - 1, 0))
        if message.id in self._receipts:
            self._send(again, waited)
            self.ack(message)
        else:
            self._keep(again, waited, "waiting for its workflow's lease")

    def fail(self, message: Message, error: str, *, retryable: bool) -> UUID | None:
        if retryable and message.attempts < message.max_attempts:
            backoff = min(self.retry_seconds * 2 ** (message.attempts - 1), MAX_BACKOFF_SECONDS)
            receipt = self._receipts.pop(message.id, None)
            if receipt is None:  # held by its sender: this is its first time in the queue
                return self._keep(message, backoff, error)
            self._visible_in(receipt, backoff)
            return None
        return self._dead_letter(message, error)

    def _keep(self, held: Message, delay: float, error: str) -> UUID | None:
        """Send a held message; if SQS will not take it, it exists nowhere else: keep it
        as a dead letter (replayable) rather than lose it."""
        try:
            self._send(held, delay)
        except Exception as exc:  # botocore's errors have no common base worth naming
            log.exception("the intake queue refused event %s", held.id)
            return self._dead_letter(held, f"{error}; the intake queue refused it: {exc}")
        return None

    def _dead_letter(self, message: Message, error: str) -> UUID:
        with self.db.tenant(message.workspace_id) as conn:
            dead = repo.insert_dead_letter(
                conn,
                workspace_id=message.workspace_id,
                topic=message.topic,
                payload=message.payload,
                error=error,
                attempts=message.attempts,
                source_id=f"sqs:{message.id}",
            )
        self.ack(message)
        return dead

    def _send(self, message: Message, delay: float = 0.0) -> None:
        body = {
            "event_id": message.id,
            "workspace_id": str(message.workspace_id),
            "topic": message.topic,
            "payload": message.payload,
            "attempts": message.attempts,
        }
        client("sqs").send_message(
            QueueUrl=self.url, MessageBody=json.dumps(body), DelaySeconds=delay_seconds(delay)
        )

    def _visible_in(self, receipt: str, seconds: float) -> None:
        client("sqs").change_message_visibility(
            QueueUrl=self.url,
            ReceiptHandle=receipt,
            VisibilityTimeout=max(0, min(43_200, int(seconds + 0.999))),
        )
