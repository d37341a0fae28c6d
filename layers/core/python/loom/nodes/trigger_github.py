"""TRIGGER.GITHUB: GitHub webhook deliveries (``X-Hub-Signature-256``) to
``/v1/hooks/{trigger_id}``, filtered by event and action."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints

from loom.nodes.base import NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.workflows.definition import NodeType

EventName = Annotated[str, StringConstraints(pattern=r"^(\*|[a-z_]{1,64}(\.[a-z_]{1,64})?)$")]


class GitHubParameters(ParametersModel):
    events: list[EventName] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=100,
        description="`event` or `event.action` (e.g. `issues.opened`, `push`); `*`: all.",
    )
    secret_credential: UUID | None = Field(
        default=None,
        description="A webhook_secret credential holding the secret set in GitHub. Unset: "
        "Loom generates one when the workflow is deployed, to paste into GitHub.",
    )


SPEC = register(
    NodeSpec(
        type=NodeType.TRIGGER,
        subtype="GITHUB",
        description="Starts a run per matching GitHub webhook event; the input holds "
        "`event`, `action`, `delivery_id` and `payload`.",
        parameters=GitHubParameters,
        kind="trigger",
        inputs=(),
    )
)
