"""EXTERNAL_ACTION.SLACK: post a message as a Slack app's bot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from loom.integrations.slack import post_message
from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel
from loom.nodes.external_common import (
    BASE_URL_HELP,
    BaseUrl,
    allowlist_of,
    checked_base_url,
    credential_of,
)
from loom.nodes.registry import register
from loom.secrets.types import SlackBot
from loom.workflows.definition import NodeType


class SlackParameters(ParametersModel):
    operation: Literal["post_message"] = Field(
        default="post_message", description="post_message: Slack's chat.postMessage."
    )
    credential_id: str = Field(
        min_length=1, description="A slack_bot credential of this workspace (a bot token)."
    )
    channel: str = Field(
        min_length=1,
        max_length=200,
        description="Channel id (C0123ABCD) or name (#general), or a user id for a direct "
        "message. The bot must be a member of the channel.",
    )
    text: str = Field(
        min_length=1,
        max_length=40_000,
        description="The message, in Slack mrkdwn; with blocks, the notification text.",
    )
    blocks: list[dict[str, Any]] | None = Field(
        default=None, max_length=50, description="Block Kit blocks, as Slack takes them."
    )
    thread_ts: str | None = Field(
        default=None,
        pattern=r"^\d{1,12}\.\d{1,8}$",
        description="Reply in the thread of the message with this ts.",
    )
    base_url: BaseUrl | None = Field(
        default=None, description=BASE_URL_HELP.format(setting="LOOM_SLACK_API_URL")
    )


async def execute(
    ctx: NodeContext, params: SlackParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    credential = await credential_of(ctx, params.credential_id, SlackBot)
    posted = await post_message(
        token=credential.token.get_secret_value(),
        channel=params.channel,
        text=params.text,
        blocks=params.blocks,
        thread_ts=params.thread_ts,
        base_url=checked_base_url(ctx, params.base_url),
        allowlist=allowlist_of(ctx),
    )
    return NodeResult(output=posted)


SPEC = register(
    NodeSpec(
        type=NodeType.EXTERNAL_ACTION,
        subtype="SLACK",
        description="Posts a message (text or Block Kit, optionally in a thread) to a Slack "
        "channel with a bot token, and outputs its channel and ts.",
        parameters=SlackParameters,
        execute=execute,
        side_effects=True,
    )
)
