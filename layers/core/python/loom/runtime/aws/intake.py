"""The SQS intake queue's consumer, ``consume_intake``: the event source mapping's batches,
record by record through the same ``deliver(queue, message, intake.handle)`` as the local
consumer, answered as a partial batch response: only the records to try again are
``batchItemFailures``, so one poison message never fails its batch. A record that cannot
be read fails every receive until SQS moves it to the DLQ (``loom.runtime.aws.redrive``
moves them back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from loom.runtime.aws.dispatcher import StepFunctionsDispatcher
from loom.runtime.aws.platform import AwsPlatform
from loom.runtime.aws.redrive import queue_url
from loom.runtime.aws.sqs_queue import SqsQueue
from loom.triggers.queue import Failed, deliver
from loom.triggers.wiring import intake_for


class RetryLater(Exception):
    """The record failed and stays in the queue for another attempt."""


def consume_intake(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    settings, db = platform.settings, platform.db
    queue = SqsQueue(
        db,
        queue_url(settings.intake_queue_url, "LOOM_INTAKE_QUEUE_URL"),
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
