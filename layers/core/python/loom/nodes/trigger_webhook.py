"""TRIGGER.WEBHOOK: ``POST /v1/hooks/{trigger_id}``, signed with the trigger's secret
(``X-Loom-Signature``, see ``loom.signing``); starts a run with the request as input."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from loom.nodes.base import NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.workflows.definition import NodeType

ContentType = Literal["application/json", "application/x-www-form-urlencoded", "text/plain"]


class WebhookParameters(ParametersModel):
    content_type: ContentType = Field(
        default="application/json",
        description="What the body must be; anything else answers 415, an unparseable body 400.",
    )
    response_mode: Literal["async", "sync"] = Field(
        default="async",
        description="async: answer 202 with the run id. sync: wait for the run and answer "
        "its output (202 with the run id if it takes longer than `sync_timeout_seconds`).",
    )
    sync_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    secret_credential: UUID | None = Field(
        default=None,
        description="A webhook_secret credential to verify with. Unset: Loom generates the "
        "secret when the workflow is deployed and shows it once.",
    )


SPEC = register(
    NodeSpec(
        type=NodeType.TRIGGER,
        subtype="WEBHOOK",
        description="Starts a run per signed POST to its URL; the input holds `body`, "
        "`headers`, `query` and `delivery_id`.",
        parameters=WebhookParameters,
        kind="trigger",
        inputs=(),
    )
)
