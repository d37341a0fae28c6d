"""EXTERNAL_ACTION.EMAIL: send an email through the workspace's SMTP server.

The Message-ID is made from the node's idempotency key, which an attempt resumed after a
crash keeps: a second delivery of the same attempt is recognisable as a duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from loom.integrations.smtp import send_email
from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel
from loom.nodes.external_common import allowlist_of, credential_of
from loom.nodes.registry import register
from loom.secrets.types import Smtp
from loom.workflows.definition import NodeType


class EmailParameters(ParametersModel):
    operation: Literal["send"] = Field(default="send", description="send: one email.")
    credential_id: str = Field(
        min_length=1,
        description="An smtp credential of this workspace: host, port (465: implicit TLS), "
        "user name and password, starttls.",
    )
    sender: str = Field(
        min_length=3,
        max_length=320,
        description="The From address: name@domain, or Display Name <name@domain>.",
    )
    to: list[str] = Field(min_length=1, max_length=100, description="Recipient addresses.")
    cc: list[str] = Field(default_factory=list, max_length=100, description="Copy recipients.")
    reply_to: str | None = Field(default=None, max_length=320, description="Reply-To address.")
    subject: str = Field(max_length=998, description="One line: line breaks are refused.")
    text: str = Field(max_length=1_000_000, description="The plain-text body.")
    html: str | None = Field(
        default=None, max_length=1_000_000, description="An HTML alternative to the text body."
    )
    timeout_seconds: float = Field(
        default=30, gt=0, le=300, description="For the whole exchange with the mail server."
    )


async def execute(
    ctx: NodeContext, params: EmailParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    credential = await credential_of(ctx, params.credential_id, Smtp)
    sent = await send_email(
        credential,
        sender=params.sender,
        to=params.to,
        subject=params.subject,
        text=params.text,
        html=params.html,
        cc=params.cc,
        reply_to=params.reply_to,
        message_id=message_id(ctx),
        allowlist=allowlist_of(ctx),
        timeout=params.timeout_seconds,
    )
    return NodeResult(output=sent)


def message_id(ctx: NodeContext) -> str:
    """``<node_run_id>.<attempt>.loom``; the sender's domain is added as its right part."""
    return f"{ctx.idempotency_key.replace(':', '.')}.loom"


SPEC = register(
    NodeSpec(
        type=NodeType.EXTERNAL_ACTION,
        subtype="EMAIL",
        description="Sends an email (text, optionally with an HTML alternative) over SMTP "
        "with the workspace's smtp credential, and outputs its Message-ID and the accepted "
        "and rejected recipients.",
        parameters=EmailParameters,
        execute=execute,
        side_effects=True,
    )
)
