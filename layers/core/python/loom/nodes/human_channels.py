"""Where a human-in-the-loop request is delivered besides the in-app list: a signed webhook,
a Slack message or an email, each carrying the request's one-time respond link.

Every delivery goes through the outbound choke point (``loom.net``) under the workspace's
allowlist. A failed delivery raises: the node then withdraws the request and fails.

This module holds the channels and what they carry; the senders, with the HTTP and SMTP
clients they need, are ``loom.nodes.human_delivery``, imported when a request goes out of
the app. A request answered in the app needs none of them, nor does a function that only
plans human waits (advance), which loads this node's spec for its parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field

from loom.errors import LoomError
from loom.nodes.base import NodeContext, NodeServices, ParametersModel


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
    if all(isinstance(channel, InAppChannel) for channel in channels):
        return
    services = _services(ctx)
    # Deferred: only requests that leave the app need the HTTP and SMTP clients (see above).
    from loom.nodes.human_delivery import deliver

    for channel in channels:
        if not isinstance(channel, InAppChannel):
            await deliver(ctx, services, channel, notice)


def _services(ctx: NodeContext) -> NodeServices:
    if ctx.services is None:
        raise DeliveryFailed(
            "This engine lends no credentials or network to nodes.",
            solution="Use the in_app channel, or run on `loom up` or AWS.",
        )
    return ctx.services
