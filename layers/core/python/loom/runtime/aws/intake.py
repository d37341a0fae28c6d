"""The SQS intake queue's functions.

- ``consume_intake``: the event source mapping's batches, record by record through the
  same ``deliver(queue, message, intake.handle)`` as the local consumer, answered as a
  partial batch response: only the records to try again are ``batchItemFailures``, so
  one poison message never fails its batch. A record that cannot be read fails every
  receive until SQS moves it to the DLQ.
- ``redrive``: moves what the DLQ holds back to the intake queue, a bounded number per
  invocation. A message moved twice (a crash between sending it and deleting it from the
  DLQ) starts its run once: the run's key is the event's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from loom.config import get_settings
from loom.errors import ConfigError
from loom.runtime.aws.clients import client
from loom.runtime.aws.dispatcher import StepFunctionsDispatcher
from loom.runtime.aws.platform import AwsPlatform
from loom.runtime.aws.sqs_queue import MAX_BATCH, SqsQueue
from loom.triggers.queue import Failed, deliver
from loom.triggers.wiring import intake_for

log = logging.getLogger(__name__)

REDRIVE_LIMIT = 500  # messages one redrive invocation moves at most


class RetryLater(Exception):
    """The record failed and stays in the queue for another attempt."""


def consume_intake(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    settings, db = platform.settings, platform.db
    queue = SqsQueue(
        db,
        _url(settings.intake_queue_url, "LOOM_INTAKE_QUEUE_URL"),
        max_attempts=settings.intake_max_attempts,
        retry_seconds=settings.intake_retry_seconds,
        delete_received=False,
    )
    intake = intake_for(settings, db, StepFunctionsDispatcher(platform.engine, settings))

    def handle_record(record: SQSRecord) -> None:
        count = int(record.attributes.approximate_receive_count)
        message = queue.accept(record.body, count, record.receipt_handle)
        outcome = deliver(queue, message, intake.handle)
        if isinstance(outcome, Failed) and outcome.dead_letter_id is None:
            raise RetryLater(outcome.error)

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    reply: dict[str, Any] = dict(
        process_partial_response(
            event=dict(event), record_handler=handle_record, processor=processor
        )
    )
    return reply


def redrive(event: Mapping[str, Any]) -> dict[str, Any]:
    """Needs no database: only the two queues."""
    settings = get_settings()
    source = _url(settings.intake_queue_url, "LOOM_INTAKE_QUEUE_URL")
    dlq = _url(settings.intake_dlq_url, "LOOM_INTAKE_DLQ_URL")
    limit = max(1, min(int(event.get("limit", REDRIVE_LIMIT)), REDRIVE_LIMIT))
    return {"moved": move_messages(dlq, source, limit)}


def move_messages(from_url: str, to_url: str, limit: int) -> int:
    """Move up to ``limit`` messages, in batches; how many were moved. A message is deleted
    from ``from_url`` only once ``to_url`` has it."""
    sqs = client("sqs")
    moved = 0
    while moved < limit:
        found = sqs.receive_message(
            QueueUrl=from_url, MaxNumberOfMessages=min(MAX_BATCH, limit - moved)
        ).get("Messages", [])
        if not found:
            break
        entries = [{"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(found)]
        sent = sqs.send_message_batch(QueueUrl=to_url, Entries=entries)
        for failure in sent.get("Failed", []):
            log.warning("redrive: sending a message failed: %s", failure.get("Message"))
        done = [found[int(entry["Id"])] for entry in sent.get("Successful", [])]
        if done:
            sqs.delete_message_batch(
                QueueUrl=from_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        moved += len(done)
        if len(done) < len(found):
            break  # the rest come back to the DLQ when their visibility ends
    return moved


def _url(value: str | None, name: str) -> str:
    if not value:
        raise ConfigError(
            f"{name} is not set: this function has no intake queue to work on.",
            solution="Deploy the triggers stack, which sets it on the functions that need it.",
        )
    return value
