"""HUMAN_IN_THE_LOOP: ask people for an approval (ports ``approve``/``reject``) or for input
(a form, as JSON Schema; the validated answer is the output), then wait.

The node files a request, sends its one-time respond link through the chosen channels and
suspends; the engine completes it with the answer, or by the timeout action when nobody
answers in time: ``fail`` the node, ``continue`` with a default, or ``route`` to port
``timeout``. A node that cannot deliver every channel withdraws its request and fails, so
its retry files a fresh one (the earlier link stops working).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from jsonschema import Draft202012Validator, SchemaError
from jsonschema import ValidationError as SchemaViolation
from pydantic import Field, field_validator, model_validator

from loom.errors import LoomError
from loom.nodes.base import (
    HumanRequest,
    NodeContext,
    NodeResult,
    NodeSpec,
    ParametersModel,
    Suspension,
)
from loom.nodes.human_channels import Channel, Notice, in_app_only, notify
from loom.nodes.registry import register
from loom.workflows.definition import MAIN_PORT, TIMEOUT_PORT, NodeType

MIN_TIMEOUT_SECONDS = 60
MAX_TIMEOUT_SECONDS = 30 * 86_400


class _Ask(ParametersModel):
    title: str = Field(min_length=1, max_length=200, description="What is asked, in one line.")
    message: str = Field(default="", max_length=10_000, description="Details for the person.")
    channels: list[Channel] = Field(
        default_factory=in_app_only,
        min_length=1,
        max_length=10,
        description="Where the request goes. in_app: listed at GET /v1/hil. webhook, slack, "
        "email: also sent there with a one-time respond link.",
    )
    timeout_seconds: int = Field(
        default=86_400,
        ge=MIN_TIMEOUT_SECONDS,
        le=MAX_TIMEOUT_SECONDS,
        description="How long to wait for an answer: 60 s to 30 days.",
    )
    timeout_action: Literal["fail", "continue", "route"] = Field(
        default="fail",
        description="When nobody answers in time: fail the node, continue with the default, "
        "or leave by port 'timeout'.",
    )


class ApprovalParameters(_Ask):
    default: Literal["approve", "reject"] | None = Field(
        default=None, description="The decision taken on timeout with timeout_action continue."
    )
    classify_free_text: bool = Field(
        default=False,
        description="Unavailable: classifying a free-text reply into approve, reject or "
        "unclear needs the LLM gateway, which is not built yet. Setting it is refused.",
    )

    @field_validator("classify_free_text")
    @classmethod
    def _unavailable(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "AI classification of free-text replies is not available yet (it needs the "
                "LLM gateway); answer with approved true or false"
            )
        return value

    @model_validator(mode="after")
    def _default_for_continue(self) -> ApprovalParameters:
        if self.timeout_action == "continue" and self.default is None:
            raise ValueError("timeout_action 'continue' needs a default: 'approve' or 'reject'")
        return self


class InputParameters(_Ask):
    form: dict[str, Any] = Field(
        description="JSON Schema (2020-12) the answer must match; the answer is the output.",
        json_schema_extra={
            "examples": [{"type": "object", "properties": {"n": {"type": "integer"}}}]
        },
    )
    default: Any = Field(
        default=None,
        description="The output on timeout with timeout_action continue; must match the form.",
    )

    @field_validator("form")
    @classmethod
    def _valid_schema(cls, form: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(form)
        except SchemaError as exc:
            raise ValueError(f"form is not a valid JSON Schema: {exc.message}") from None
        return form

    @model_validator(mode="after")
    def _default_matches(self) -> InputParameters:
        if self.timeout_action != "continue":
            return self
        if self.default is None:
            raise ValueError("timeout_action 'continue' needs a default answer")
        try:
            Draft202012Validator(self.form).validate(self.default)
        except SchemaViolation as exc:
            raise ValueError(f"default does not match the form: {exc.message}") from None
        return self


class NoHumanDesk(LoomError):
    code = "hil_unavailable"
    retryable = False


def _approval_ports(parameters: Mapping[str, Any]) -> tuple[str, ...]:
    base = ("approve", "reject")
    return (*base, TIMEOUT_PORT) if _routes_timeout(parameters) else base


def _input_ports(parameters: Mapping[str, Any]) -> tuple[str, ...]:
    return (MAIN_PORT, TIMEOUT_PORT) if _routes_timeout(parameters) else (MAIN_PORT,)


def _routes_timeout(parameters: Mapping[str, Any]) -> bool:
    return parameters.get("timeout_action") == "route"


async def _ask(
    ctx: NodeContext,
    params: ApprovalParameters | InputParameters,
    kind: Literal["approval", "input"],
    shown: dict[str, Any],
) -> NodeResult:
    desk = ctx.humans
    if desk is None:
        raise NoHumanDesk(
            "This engine cannot wait for people.",
            solution="Run the workflow on `loom up` or on AWS.",
        )
    token = secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(seconds=params.timeout_seconds)
    request = HumanRequest(
        kind=kind,
        request={"title": params.title, "message": params.message, **shown},
        channels=tuple(channel.type for channel in params.channels),
        timeout_action=params.timeout_action,
        expires_at=expires_at,
        link_token_hash=hashlib.sha256(token.encode()).hexdigest(),
    )
    request_id = await desk.file(ctx.node_run_id, ctx.run_id, request)
    notice = Notice(
        request_id=request_id,
        run_id=ctx.run_id,
        node_id=ctx.node_id,
        kind=kind,
        title=params.title,
        message=params.message,
        form=shown.get("form"),
        expires_at=expires_at,
        link=f"{desk.base_url}/v1/public/hil/{token}",
    )
    try:
        await notify(ctx, params.channels, notice)
    except BaseException:
        await desk.withdraw(request_id)
        raise
    # Answers arrive through /v1/hil, never through a resume token: this one stays unknown.
    suspension = Suspension(
        token=secrets.token_urlsafe(32),
        expires_at=expires_at,
        request={"request_id": str(request_id), "kind": kind},
    )
    return NodeResult(suspend=suspension)


async def _approval(ctx: NodeContext, params: Any, inputs: Any) -> NodeResult:
    shown = {"default": params.default} if params.default else {}
    return await _ask(ctx, params, "approval", shown)


async def _input(ctx: NodeContext, params: Any, inputs: Any) -> NodeResult:
    shown = {"form": params.form}
    if params.timeout_action == "continue":
        shown["default"] = params.default
    return await _ask(ctx, params, "input", shown)


APPROVAL = register(
    NodeSpec(
        type=NodeType.HUMAN_IN_THE_LOOP,
        subtype="APPROVAL",
        description="Wait for a person to approve or reject; leave by 'approve' or 'reject' "
        "(or 'timeout').",
        parameters=ApprovalParameters,
        execute=_approval,
        outputs=("approve", "reject"),
        output_ports=_approval_ports,
        side_effects=True,
    )
)

INPUT = register(
    NodeSpec(
        type=NodeType.HUMAN_IN_THE_LOOP,
        subtype="INPUT",
        description="Wait for a person to fill in a form; the validated answer is the output.",
        parameters=InputParameters,
        execute=_input,
        output_ports=_input_ports,
        side_effects=True,
    )
)
