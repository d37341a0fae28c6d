"""What goes into a gateway call and what comes out of it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class CallContext:
    """Who is calling: the ids recorded with the usage, the deadline and the run's budget.

    ``deadline_seconds`` bounds the whole call, retries and fallbacks included (unset:
    ``LOOM_LLM_DEADLINE_SECONDS``); a node passes less than its own timeout so the gateway
    fails clearly before the function is killed. ``run_budget_usd`` caps what the run may
    spend on models, across all its calls."""

    workspace_id: UUID
    run_id: UUID | None = None
    node_run_id: UUID | None = None
    agent_id: UUID | None = None
    episode_id: UUID | None = None
    deadline_seconds: float | None = None
    run_budget_usd: float | None = None


@dataclass(frozen=True)
class ToolCall:
    """A tool the model asked for. When its arguments are not a JSON object, ``arguments``
    is empty and ``invalid_arguments`` holds what the model wrote, to send back to it."""

    id: str
    name: str
    arguments: dict[str, Any]
    invalid_arguments: str | None = None

    @classmethod
    def parse(cls, call_id: str, name: str, raw: str) -> ToolCall:
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return cls(call_id, name, parsed)
        return cls(call_id, name, {}, invalid_arguments=raw)


@dataclass(frozen=True)
class Completion:
    """A model's answer. ``model`` is the one that answered (perhaps a fallback); tokens
    and cost are its answer's (failed attempts leave usage rows but cost nothing);
    ``latency_ms`` is the whole call's, retries and fallbacks included; ``warnings`` name
    the budget thresholds this call crossed, for the engine to report."""

    text: str
    tool_calls: list[ToolCall]
    finish_reason: str
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: int
    warnings: list[str] = field(default_factory=list)
    notice: str | None = None  # to show with the answer, e.g. that a tiny local model gave it


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call: the first piece of each call (by ``index``) carries its id
    and name, later pieces the next fragment of its JSON arguments."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True)
class StreamEnd:
    """The last event of a stream: the whole completion, with usage and cost."""

    completion: Completion


StreamEvent = TextDelta | ToolCallDelta | StreamEnd
