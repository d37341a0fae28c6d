"""The local SMTP listener for TRIGGER.EMAIL (SES receipt rules on AWS): loopback only,
off unless ``LOOM_SMTP_PORT`` is set. A recipient must be a deployed EMAIL trigger's
address (``<trigger id>@<domain>``), else it is refused at RCPT; each accepted message
goes through the same receive path as webhooks."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from loom.errors import LoomError
from loom.triggers.mail import SenderRefused, trigger_of
from loom.triggers.receive import Receiver

log = logging.getLogger(__name__)


class _Handler:
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        trigger_id = trigger_of(address)
        known = trigger_id is not None and await asyncio.to_thread(
            self.receiver.knows, trigger_id, "EMAIL"
        )
        if not known:
            return "550 5.1.1 No such trigger address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        sender = str(envelope.mail_from or "")
        received_at = datetime.now(UTC)
        for address in envelope.rcpt_tos:
            trigger_id = trigger_of(address)
            assert trigger_id is not None  # checked at RCPT
            try:
                await asyncio.to_thread(
                    self.receiver.receive_mail, trigger_id, raw, sender, received_at
                )
            except SenderRefused:
                return "550 5.7.1 Sender not accepted by this trigger"
            except LoomError as exc:
                log.warning("mail for trigger %s not accepted: %s", trigger_id, exc.message)
                return "451 4.3.0 Not accepted now; try again later"
        return "250 Message accepted"


class MailListener:
    def __init__(self, receiver: Receiver, *, host: str, port: int, max_bytes: int) -> None:
        self.host = host
        self._running = False
        self._controller = Controller(
            _Handler(receiver),
            hostname=host,
            port=port,
            data_size_limit=max_bytes,
            decode_data=False,
            ready_timeout=10,
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> None:
        try:
            # aiosmtpd reports a port in use only after its ready timeout: probe first.
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((self.host, self.port))
            self._controller.start()
        except OSError as exc:
            raise LoomError(
                f"The SMTP listener cannot listen on {self.host}:{self.port}: {exc.strerror}.",
                solution="Choose another LOOM_SMTP_PORT, or unset it to turn the listener off.",
            ) from None
        self._running = True

    def stop(self) -> None:
        if self._running:
            self._controller.stop()
            self._running = False
