"""Sending email over SMTP, under the same address policy as outbound HTTP.

The mail server's name is resolved once and every answer checked with ``loom.net.policy``
(internal addresses need the workspace allowlist to admit ``host`` or ``host:port``; cloud
metadata never); the connection is then opened to a checked address, and TLS, implicit on
port 465 or STARTTLS when the credential asks for it, still verifies the certificate
against the host name. ``starttls: false`` on another port sends in the clear, password
included: only for relays on a trusted network.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import aiosmtplib
import httpx

from loom.errors import InvalidInput, LoomError
from loom.integrations._http import excerpt
from loom.integrations.errors import (
    IntegrationAuthFailed,
    IntegrationError,
    IntegrationUnavailable,
)
from loom.integrations.mail import build_mail
from loom.net import (
    OutboundCertificateInvalid,
    OutboundConnectionFailed,
    OutboundTimeout,
    Resolver,
    system_resolver,
)
from loom.net.client import certificate_error, default_ssl_context, resolve_checked
from loom.net.policy import (
    Allowlist,
    Target,
    normalise_host,
)
from loom.secrets.types import Smtp

IMPLICIT_TLS_PORT = 465
# The EHLO name: RFC 5321 wants a name the client is known by; Loom has none to offer,
# and the machine's own name is nobody else's business.
EHLO_NAME = "localhost"


async def send_email(
    credential: Smtp,
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    cc: Sequence[str] = (),
    reply_to: str | None = None,
    message_id: str | None = None,
    allowlist: Sequence[str] = (),
    timeout: float = 30,
    tls_context: ssl.SSLContext | None = None,
    resolver: Resolver = system_resolver,
) -> dict[str, Any]:
    """Send one email (``html``, when given, as the alternative to ``text``); return its
    ``message_id``, the ``accepted`` recipients and the ``rejected`` ones with the server's
    reply. ``tls_context`` and ``resolver`` are for tests; ``timeout`` covers everything."""
    mail = build_mail(
        sender=sender,
        to=to,
        subject=subject,
        text=text,
        html=html,
        cc=cc,
        reply_to=reply_to,
        message_id=message_id,
    )
    login = _login(credential)
    target = _target(credential)
    secret = login[1] if login else ""
    implicit = target.port == IMPLICIT_TLS_PORT
    try:
        async with asyncio.timeout(timeout):
            sock = await _connect(target, Allowlist(allowlist), resolver)
            try:
                client = aiosmtplib.SMTP(
                    hostname=target.host,
                    sock=sock,
                    local_hostname=EHLO_NAME,
                    timeout=timeout,
                    use_tls=implicit,
                    start_tls=credential.starttls and not implicit,
                    tls_context=tls_context or default_ssl_context(),
                    username=login[0] if login else None,
                    password=secret or None,
                )
                async with client:
                    refused, _ = await client.send_message(
                        mail.message, sender=mail.sender, recipients=list(mail.recipients)
                    )
            finally:
                sock.close()
    except TimeoutError:
        raise OutboundTimeout(
            f"Sending email through {target.where} did not complete within {timeout:g} s.",
            solution="Check that the mail server answers, or raise the timeout.",
        ) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise _failure(exc, target, secret) from None
    return {
        "message_id": mail.message_id,
        "accepted": [r for r in mail.recipients if r not in refused],
        "rejected": {
            r: f"{reply.code} {excerpt(reply.message, secret)}" for r, reply in refused.items()
        },
    }


def _login(credential: Smtp) -> tuple[str, str] | None:
    if credential.username is None and credential.password is None:
        return None
    if credential.username is None or credential.password is None:
        raise InvalidInput(
            "The smtp credential has a user name or a password, but not both.",
            solution="Give both to log in, or neither for a server that needs no login.",
        )
    return credential.username, credential.password.get_secret_value()


def _target(credential: Smtp) -> Target:
    """The mail server as the outbound policy sees a target (its URL is only a label)."""
    host, address = normalise_host(credential.host, what="SMTP host")
    url = httpx.URL(scheme="smtp", host=host, port=credential.port)
    return Target(url=url, host=host, port=credential.port, address=address, given=credential.host)


async def _connect(target: Target, allowlist: Allowlist, resolver: Resolver) -> socket.socket:
    """Resolve once, refuse if any answer is internal (allowlist aside), then connect to
    the checked addresses in turn."""
    addresses = await resolve_checked(target, allowlist, resolver)
    loop = asyncio.get_running_loop()
    failure: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (str(address), target.port))
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    assert failure is not None
    raise OutboundConnectionFailed(
        f"The connection to {target.where} failed: {failure.strerror or failure}.",
        solution="Check the mail server's host and port, and that it is up.",
    )


def _failure(exc: BaseException, target: Target, secret: str) -> LoomError:
    """What went wrong, by the server's reply code: 4xx is temporary, 5xx is not."""
    invalid = certificate_error(exc)
    if invalid is not None:
        return OutboundCertificateInvalid(
            f"The TLS certificate of {target.where} is not valid for {target.host}: "
            f"{invalid.verify_message.rstrip('.')}.",
            solution="Use the host name the certificate was issued for.",
        )
    where = f"The mail server {target.where}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = {e.recipient: f"{e.code} {excerpt(e.message, secret)}" for e in exc.recipients}
        kind = (
            IntegrationUnavailable
            if any(e.code < 500 for e in exc.recipients)
            else IntegrationError
        )
        return kind(
            f"{where} refused every recipient.",
            solution="Check the addresses; the server's replies are in details.",
            details={"rejected": replies},
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = f"{exc.code} {excerpt(exc.message, secret)}"
        if exc.code >= 500 and isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return IntegrationAuthFailed(
                f"{where} refused the login: {reply}.",
                solution="Fix the user name and password of the smtp credential (some "
                "providers want an app password).",
            )
        kind = IntegrationUnavailable if exc.code < 500 else IntegrationError
        return kind(
            f"{where} answered {reply}.",
            solution="A 4xx reply is temporary: the node's retry policy may try again. "
            "A 5xx reply needs the message or the addresses fixed.",
        )
    if isinstance(exc, OSError):  # aiosmtplib's connect and disconnect errors are too
        reason = excerpt(str(exc), secret) or type(exc).__name__
        return OutboundConnectionFailed(
            f"The connection to {target.where} failed: {reason}.",
            solution="Check the mail server's host and port (465 for implicit TLS), and "
            "that it is up.",
        )
    return IntegrationError(
        f"{where} cannot take this message: {excerpt(str(exc), secret)}",
        solution="Use a port and starttls setting the server supports (587 with STARTTLS "
        "or 465 with TLS are the usual ones).",
    )
