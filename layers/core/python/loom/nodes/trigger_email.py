"""TRIGGER.EMAIL: a run per email to ``<trigger_id>@<LOOM_MAIL_DOMAIN>`` (locally the SMTP
listener of ``loom up``; on AWS, SES receipt rules)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from loom.nodes.base import NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.workflows.definition import NodeType

Sender = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[^@\s]*@[^@\s]+$"),
]


class EmailParameters(ParametersModel):
    allowed_senders: list[Sender] = Field(
        default_factory=list,
        max_length=200,
        description="Addresses (`ada@example.com`) or domains (`@example.com`) whose mail "
        "starts runs; empty: anyone's. Envelope senders are not authenticated: use it to "
        "filter, not to trust.",
    )


SPEC = register(
    NodeSpec(
        type=NodeType.TRIGGER,
        subtype="EMAIL",
        description="Starts a run per email to its address; the input holds `from`, `to`, "
        "`subject`, `text`, `html`, `message_id` and `attachments` (names and sizes).",
        parameters=EmailParameters,
        kind="trigger",
        inputs=(),
    )
)
