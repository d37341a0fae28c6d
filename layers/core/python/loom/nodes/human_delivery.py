"""Sending a human-in-the-loop request out of the app: a signed webhook, a Slack message or
an email, through the outbound choke point (``loom.net``) under the workspace's allowlist.
The channels and ``notify`` are ``loom.nodes.human_channels``."""

from __future__ import annotations

import json

from loom.integrations.slack import post_message
from loom.integrations.smtp import send_email
from loom.net import OutboundClient
from loom.nodes.base import NodeContext, NodeServices
from loom.nodes.external_common import checked_base_url, credential_of
from loom.nodes.human_channels import (
    DeliveryFailed,
    EmailChannel,
    Notice,
    SlackChannel,
    WebhookChannel,
)
from loom.secrets.types import SlackBot, Smtp, WebhookSecret
from loom.signing import HEADER, sign

WEBHOOK_TIMEOUT_SECONDS = 30.0
WEBHOOK_MAX_REPLY_BYTES = 64 * 1024


async def deliver(
    ctx: NodeContext,
    services: NodeServices,
    channel: WebhookChannel | SlackChannel | EmailChannel,
    notice: Notice,
) -> None:
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
