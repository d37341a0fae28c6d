"""Where a human-in-the-loop request is delivered besides the in-app list: a signed webhook,
a Slack message or an email, each carrying the request's one-time respond link.

Every delivery goes through the outbound choke point (``loom.net``) under the workspace's
allowlist. A failed delivery raises: the node then withdraws the request and fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field

from loom.errors import LoomError
from loom.integrations.slack import post_message
from loom.integrations.smtp import send_email
from loom.net import OutboundClient
from loom.nodes.base import NodeContext, NodeServices, ParametersModel
from loom.nodes.external_common import checked_base_url, credential_of
from loom.secrets.types import SlackBot, Smtp, WebhookSecret
from loom.signing import HEADER, sign

WEBHOOK_TIMEOUT_SECONDS = 30.0
WEBHOOK_MAX_REPLY_BYTES = 64 * 1024


class InAppChannel(ParametersModel):
    type: Literal["in_app"]


class WebhookChannel(ParametersModel):
    type: Literal["webhook"]
    url: str = Field(min_length=1, max_length=2048, description="Receives a signed POST.")
    secret_credential_id: str = Field(
        min_length=1,
        description="A webhook_secret credential; the body is signed with it in "
        "X-Loom-Signature (t=<unix>,v1=<hex HMAC-SHA256 of 't.body'>).",
    )


class SlackChannel(ParametersModel):
    type: Literal["slack"]
    credential_id: str = Field(min_length=1, description="A slack_bot credential.")
    channel: str = Field(min_length=1, max_length=200, description="Channel id or name.")
    base_url: str | None = Field(default=None, description="Slack Web API base URL override.")


class EmailChannel(ParametersModel):
    type: Literal["email"]
    credential_id: str = Field(min_length=1, description="An smtp credential.")
    sender: str = Field(min_length=3, max_length=320, description="The From address.")
    to: list[str] = Field(min_length=1, max_length=50, description="Who is asked.")


Channel = Annotated[
    InAppChannel | WebhookChannel | SlackChannel | EmailChannel, Field(discriminator="type")
]


def in_app_only() -> list[Channel]:
    return [InAppChannel(type="in_app")]


class DeliveryFailed(LoomError):
    code = "hil_delivery_failed"


@dataclass(frozen=True)
class Notice:
    """What each channel carries. ``link`` is a capability: it goes to the people asked
    and nowhere else (not into outputs, events or logs)."""

    request_id: UUID
    run_id: UUID
    node_id: str
    kind: str
    title: str
    message: str
    form: Any
    expires_at: datetime
    link: str

    def text(self) -> str:
        lines = [self.title]
        if self.message:
            lines += ["", self.message]
        verb = "Approve or reject" if self.kind == "approval" else "Answer"
        lines += ["", f"{verb} before {self.expires_at:%Y-%m-%d %H:%M} UTC: {self.link}"]
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        return {
            "type": "hil.request",
            "request_id": str(self.request_id),
            "run_id": str(self.run_id),
            "node_id": self.node_id,
            "kind": self.kind,
            "title": self.title,
            "message": self.message,
            "form": self.form,
            "expires_at": self.expires_at.isoformat(),
            "link": self.link,
            "respond_url": f"{self.link}/respond",
        }


async def notify(ctx: NodeContext, channels: Sequence[Channel], notice: Notice) -> None:
    for channel in channels:
        if isinstance(channel, InAppChannel):
            continue
        services = _services(ctx)
        if isinstance(channel, WebhookChannel):
            await _webhook(ctx, services, channel, notice)
        elif isinstance(channel, SlackChannel):
            bot = await credential_of(ctx, channel.credential_id, SlackBot)
            await post_message(
                token=bot.token.get_secret_value(),
                channel=channel.channel,
                text=notice.text(),
                base_url=checked_base_url(ctx, channel.base_url),
                allowlist=services.outbound_allowlist,
            )
        else:
            smtp = await credential_of(ctx, channel.credential_id, Smtp)
            await send_email(
                smtp,
                sender=channel.sender,
                to=channel.to,
                subject=f"[Loom] {notice.title}",
                text=notice.text(),
                message_id=f"<hil-{notice.request_id}@loom>",
                allowlist=services.outbound_allowlist,
            )


async def _webhook(
    ctx: NodeContext, services: NodeServices, channel: WebhookChannel, notice: Notice
) -> None:
    key = await credential_of(ctx, channel.secret_credential_id, WebhookSecret)
    body = json.dumps(notice.payload(), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        HEADER: sign(key.secret.get_secret_value().encode(), body),
        "X-Loom-Delivery": str(notice.request_id),
    }
    async with OutboundClient(allowlist=services.outbound_allowlist) as client:
        reply = await client.request(
            "POST",
            channel.url,
            headers=headers,
            content=body,
            timeout=WEBHOOK_TIMEOUT_SECONDS,
            max_bytes=WEBHOOK_MAX_REPLY_BYTES,
        )
    if not 200 <= reply.status < 300:
        raise DeliveryFailed(
            f"The webhook at {channel.url} answered {reply.status}.",
            solution="Make the receiver answer 2xx; the node's retry policy sends it again.",
        )


def _services(ctx: NodeContext) -> NodeServices:
    if ctx.services is None:
        raise DeliveryFailed(
            "This engine lends no credentials or network to nodes.",
            solution="Use the in_app channel, or run on `loom up` or AWS.",
        )
    return ctx.services
