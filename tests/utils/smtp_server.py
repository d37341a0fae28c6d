"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it accepts.

It checks AUTH against its ``users``, can speak STARTTLS or implicit TLS with a certificate
the test makes (``self_signed``), and answers 550 or 451 to the recipients it is told to.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
from collections.abc import Awaitable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVER_NAME = "mail.loom.test"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: str | None
    tls: bool

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpServer:
    port: int
    users: Mapping[str, str]
    reject: Collection[str] = ()  # answered 550
    defer: Collection[str] = ()  # answered 451
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)

    @property
    def where(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address in self.defer:
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        auth: Any = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        self.received.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                content=content,
                login=login,
                tls=session.ssl is not None,
            )
        )
        return "250 2.0.0 Ok: queued as 4F2A1C"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        accepted = self.users.get(user) == password
        self.logins.append((user, accepted))
        return AuthResult(success=accepted, handled=False, auth_data=data)


class _Controller(Controller):
    """Listens on a socket bound beforehand, so the port is free and known (port 0)."""

    def __init__(self, handler: SmtpServer, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1], **kwargs)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


@contextmanager
def serve_smtp(
    *,
    users: Mapping[str, str] | None = None,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    reject: Collection[str] = (),
    defer: Collection[str] = (),
) -> Iterator[SmtpServer]:
    """An SMTP server; with ``users`` it requires AUTH (over TLS when it has a context);
    ``starttls`` or ``implicit_tls`` is a server context (see ``self_signed``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = SmtpServer(port=sock.getsockname()[1], users=users or {}, reject=reject, defer=defer)
    tls = starttls or implicit_tls
    controller = _Controller(
        server,
        sock,
        ssl_context=implicit_tls,
        server_hostname=SERVER_NAME,
        tls_context=starttls,
        require_starttls=starttls is not None,
        authenticator=server.authenticate if users else None,
        auth_required=bool(users),
        auth_require_tls=tls is not None,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
        sock.close()


def self_signed(name: str, folder: Path) -> tuple[ssl.SSLContext, str]:
    """A server context for a self-signed certificate naming ``name``, and its PEM (to
    trust with ``ssl.create_default_context(cadata=pem)``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context, pem.decode()
