"""Building an email safely: every address parsed strictly, no header injection.

Values reach headers only through ``email.message.EmailMessage``, after a check that they
hold no line break or control character, so no value can start a header of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address, Group
from email.message import EmailMessage
from email.policy import default
from email.utils import formatdate, make_msgid

from loom.errors import InvalidInput

MAX_RECIPIENTS = 100
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls, CR and LF among them; not tab
_MESSAGE_ID = re.compile(r"<?([^<>@\s]{1,200})(?:@([^<>@\s]{1,253}))?>?")


@dataclass(frozen=True)
class Mail:
    message: EmailMessage
    sender: str  # the envelope sender (MAIL FROM), an addr-spec
    recipients: tuple[str, ...]  # To and Cc, addr-specs

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


def build_mail(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    cc: Sequence[str] = (),
    reply_to: str | None = None,
    message_id: str | None = None,
) -> Mail:
    """The message and its envelope. ``message_id`` may be ``<left@right>``, ``left@right``
    or ``left`` (the sender's domain is added); unset, a random one is made."""
    sender_address = address(sender, "sender")
    to_addresses = [address(value, "to") for value in to]
    cc_addresses = [address(value, "cc") for value in cc]
    if not to_addresses:
        raise InvalidInput("An email needs at least one recipient.", solution="Fill in to.")
    if len(to_addresses) + len(cc_addresses) > MAX_RECIPIENTS:
        raise InvalidInput(
            f"An email may have at most {MAX_RECIPIENTS} recipients (to and cc).",
            solution="Send several emails, or use a mailing list address.",
        )
    message = EmailMessage()
    message["From"] = sender_address
    message["To"] = to_addresses
    if cc_addresses:
        message["Cc"] = cc_addresses
    if reply_to is not None:
        message["Reply-To"] = address(reply_to, "reply_to")
    message["Subject"] = header_text(subject, "subject")
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = _message_id(message_id, sender_address.domain)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return Mail(
        message=message,
        sender=sender_address.addr_spec,
        recipients=tuple(dict.fromkeys(a.addr_spec for a in to_addresses + cc_addresses)),
    )


def address(value: str, what: str) -> Address:
    """One mailbox, ``ada@example.com`` or ``Ada Lovelace <ada@example.com>``, parsed the
    way a mail header is, and refused on any defect, list or group."""
    refused = InvalidInput(
        f"The {what} address {value[:100]!r} is not one valid email address.",
        solution="Write name@domain, or Display Name <name@domain>; one per entry.",
    )
    if _CONTROL.search(value):
        raise InvalidInput(
            f"The {what} address contains a line break or control character.",
            solution="Remove CR, LF and other control characters: they would start new "
            "mail headers.",
        )
    try:
        header = default.header_factory("to", value)
    except (IndexError, ValueError):
        raise refused from None
    groups: tuple[Group, ...] = getattr(header, "groups", ())
    if header.defects or len(groups) != 1 or groups[0].display_name is not None:
        raise refused
    addresses = groups[0].addresses
    if len(addresses) != 1 or not addresses[0].username or not addresses[0].domain:
        raise refused
    found: Address = addresses[0]
    return found


def header_text(value: str, what: str) -> str:
    if _CONTROL.search(value):
        raise InvalidInput(
            f"The {what} contains a line break or control character.",
            solution="Keep it on one line: a line break would start a new mail header.",
        )
    return value


def _message_id(value: str | None, domain: str) -> str:
    if value is None:
        return make_msgid(domain=domain)
    match = _MESSAGE_ID.fullmatch(value)
    if match is None or _CONTROL.search(value):
        raise InvalidInput(
            f"{value[:100]!r} is not a Message-ID.",
            solution="Use <unique-part@domain>, without spaces or angle brackets inside.",
        )
    return f"<{match.group(1)}@{match.group(2) or domain}>"
