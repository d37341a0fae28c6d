"""Inbound email as a trigger event: the message, parsed, becomes the run input.

The address of a TRIGGER.EMAIL node is ``<trigger_id>@<mail domain>``. The same code path
serves the local SMTP listener and (later) SES on AWS; both hand over the raw message and
the envelope sender.
"""

from __future__ import annotations

import email.policy
import hashlib
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from typing import Any
from uuid import UUID

from loom.errors import LoomError
from loom.nodes.trigger_email import EmailParameters
from loom.triggers.events import delivery_id
from loom.triggers.sources import Accepted

MAX_TEXT_CHARS = 1_000_000  # of each of the text and HTML bodies kept in the run input


class SenderRefused(LoomError):
    code = "sender_not_allowed"
    status = 403
    retryable = False


def trigger_of(address: str) -> UUID | None:
    """The trigger an address names (its local part, before any ``+tag``), if it is one."""
    local = parseaddr(address)[1].rpartition("@")[0] or address
    try:
        return UUID(local.split("+", 1)[0])
    except ValueError:
        return None


def sender_allowed(allowed: list[str], sender: str) -> bool:
    if not allowed:
        return True
    address = sender.lower()
    domain = "@" + address.rpartition("@")[2]
    return address in allowed or domain in allowed


def accept_mail(params: EmailParameters, raw: bytes, envelope_sender: str) -> Accepted:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)  # what the default policy builds
    sender = _addresses(message, "from")
    checked = sender[0] if sender else envelope_sender
    if not sender_allowed(list(params.allowed_senders), checked):
        raise SenderRefused(
            f"Mail from {checked} is not accepted by this trigger.",
            solution="Add the sender or its @domain to the trigger's allowed_senders.",
        )
    message_id = _clean(str(message.get("message-id", ""))).strip()
    chosen = delivery_id(message_id) if message_id else "sha256:" + hashlib.sha256(raw).hexdigest()
    run_input = {
        "from": checked,
        "envelope_from": envelope_sender,
        "to": _addresses(message, "to"),
        "cc": _addresses(message, "cc"),
        "subject": _clean(str(message.get("subject", ""))),
        "date": _clean(str(message.get("date", ""))) or None,
        "message_id": message_id or None,
        "text": _body(message, "plain"),
        "html": _body(message, "html"),
        "attachments": [_attachment(part) for part in message.iter_attachments()],
    }
    return Accepted(run_input, chosen, (f"id:{chosen}",))


def _addresses(message: EmailMessage, header: str) -> list[str]:
    values = [str(value) for value in message.get_all(header, [])]
    return [address for _, address in getaddresses(values) if address]


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    content = part.get_content()
    text = content if isinstance(content, str) else content.decode("utf-8", "replace")
    return _clean(text)[:MAX_TEXT_CHARS]


def _clean(text: str) -> str:
    """Without NUL characters, which cannot be stored."""
    return text.replace("\x00", "")


def _attachment(part: Any) -> dict[str, Any]:
    payload = part.get_payload(decode=True) or b""
    return {
        "filename": part.get_filename(),
        "content_type": part.get_content_type(),
        "size": len(payload),
    }
