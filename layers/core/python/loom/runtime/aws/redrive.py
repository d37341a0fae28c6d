"""The redrive worker: move what the intake DLQ holds back to the intake queue, a bounded
number per invocation. A message moved twice (a crash between sending it and deleting it
from the DLQ) starts its run once: the run's key is the event's. It needs no database,
only the two queues, and imports none.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from loom.config import get_settings
from loom.errors import ConfigError
from loom.runtime.aws.clients import client

log = logging.getLogger(__name__)

REDRIVE_LIMIT = 500  # messages one redrive invocation moves at most
MAX_BATCH = 10  # SQS's largest receive and send batch (as loom.runtime.aws.sqs_queue's)


def redrive(event: Mapping[str, Any]) -> dict[str, Any]:
    """Needs no database: only the two queues."""
    settings = get_settings()
    source = queue_url(settings.intake_queue_url, "LOOM_INTAKE_QUEUE_URL")
    dlq = queue_url(settings.intake_dlq_url, "LOOM_INTAKE_DLQ_URL")
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


def queue_url(value: str | None, name: str) -> str:
    if not value:
        raise ConfigError(
            f"{name} is not set: this function has no intake queue to work on.",
            solution="Deploy the triggers stack, which sets it on the functions that need it.",
        )
    return value
