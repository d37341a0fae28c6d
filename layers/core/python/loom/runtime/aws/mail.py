"""Inbound email on AWS: an SES receipt rule stores each message in S3
(``LOOM_MAIL_BUCKET``, key ``inbound/<SES message id>``), then invokes this function with
the envelope - sender and recipients - which hands each recipient that names a trigger
to the same receive path as the local SMTP listener.

A recipient that names no deployed EMAIL trigger, or a sender the trigger does not allow,
is logged and dropped (SES has accepted the message already: there is no one to refuse it
to). Any other failure fails the invocation, which Lambda retries; recipients handled
before it answer ``duplicate`` by their Message-ID, so a retry starts no second run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from loom.errors import ConfigError, LoomError
from loom.runtime.aws.clients import client
from loom.runtime.aws.dispatcher import StepFunctionsDispatcher
from loom.runtime.aws.platform import AwsPlatform
from loom.triggers.mail import trigger_of
from loom.triggers.receive import Receipt
from loom.triggers.wiring import receiver_for

log = logging.getLogger(__name__)

PREFIX = "inbound/"  # the receipt rule's S3 object key prefix


def receive_ses(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    settings, db = platform.settings, platform.db
    if not settings.mail_bucket:
        raise ConfigError(
            "LOOM_MAIL_BUCKET is not set: the stored messages cannot be read.",
            solution="Deploy the triggers stack with -c loom:inboundMailDomain=<domain>, "
            "which sets it.",
        )
    receiver = receiver_for(settings, db, StepFunctionsDispatcher(platform.engine, settings))
    answers: dict[str, str] = {}
    for record in event.get("Records", []):
        mail, recipients = record["ses"]["mail"], record["ses"]["receipt"]["recipients"]
        key = PREFIX + mail["messageId"]
        raw = client("s3").get_object(Bucket=settings.mail_bucket, Key=key)["Body"].read()
        received_at = datetime.fromisoformat(mail["timestamp"])
        for address in recipients:
            trigger_id = trigger_of(address)
            if trigger_id is None:
                log.info("mail %s: %s names no trigger", mail["messageId"], address)
                answers[address] = "refused"
                continue
            try:
                receipt = receiver.receive_mail(trigger_id, raw, mail["source"], received_at)
            except LoomError as exc:
                if exc.retryable:
                    raise
                log.warning("mail for trigger %s not accepted: %s", trigger_id, exc.message)
                answers[address] = "refused"
                continue
            assert isinstance(receipt, Receipt)  # mail sources never answer for themselves
            answers[address] = receipt.status
    return {"recipients": answers}
