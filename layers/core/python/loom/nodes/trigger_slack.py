"""TRIGGER.SLACK: Slack Events API requests (``X-Slack-Signature`` v0) to
``/v1/hooks/{trigger_id}``; answers Slack's URL-verification challenge itself."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints

from loom.nodes.base import NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.workflows.definition import NodeType

EventType = Annotated[str, StringConstraints(pattern=r"^(\*|[a-z_]{1,64})$")]


class SlackParameters(ParametersModel):
    signing_secret_credential: UUID = Field(
        description="A webhook_secret credential holding the Slack app's Signing Secret."
    )
    event_types: list[EventType] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=100,
        description="Inner event types to start runs for (e.g. `app_mention`, `message`); "
        "`*`: all.",
    )


SPEC = register(
    NodeSpec(
        type=NodeType.TRIGGER,
        subtype="SLACK",
        description="Starts a run per matching Slack event; the input holds `event_type`, "
        "`event`, `event_id`, `team_id` and `payload`.",
        parameters=SlackParameters,
        kind="trigger",
        inputs=(),
    )
)
