"""The workflow definition: a JSON DAG of nodes and edges.

This is the saved form, shared by the API, the CLI, both engines and the builder. Models
forbid unknown fields so a typo is an error at save time, not a silent no-op at run time.
"""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NODE_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
SUBTYPE_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"
MAIN_PORT = "main"
ERROR_PORT = "error"
# Where a node that waits with a deadline leaves when it passes (HUMAN_IN_THE_LOOP).
TIMEOUT_PORT = "timeout"

MAX_NODES = 1000
MAX_EDGES = 5000
MAX_DEFINITION_BYTES = 2 * 1024 * 1024
MAX_NAME_LENGTH = 200


class NodeType(StrEnum):
    TRIGGER = "TRIGGER"
    AI_AGENT = "AI_AGENT"
    ACTION = "ACTION"
    EXTERNAL_ACTION = "EXTERNAL_ACTION"
    FLOW = "FLOW"
    HUMAN_IN_THE_LOOP = "HUMAN_IN_THE_LOOP"
    TOOL = "TOOL"
    MEMORY = "MEMORY"


# TOOL and MEMORY nodes are not steps: they attach to AI_AGENT nodes (by an edge from the
# attachment to the agent), which use them while they run.
ATTACHMENT_TYPES = frozenset({NodeType.TOOL, NodeType.MEMORY})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class RetryPolicy(_Strict):
    """How often a failed node is tried again, and how long to wait in between."""

    max_attempts: int = Field(default=1, ge=1, le=20, description="Total attempts, first included.")
    backoff_seconds: float = Field(default=1.0, ge=0, le=3600)
    backoff_rate: float = Field(default=2.0, ge=1, le=10)
    max_backoff_seconds: float = Field(default=300.0, ge=0, le=86_400)
    jitter: bool = Field(default=True, description="Full jitter: wait a random share of the delay.")

    def delay_after(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``attempt`` (1-based) failed."""
        delay = min(
            self.backoff_seconds * self.backoff_rate ** (attempt - 1), self.max_backoff_seconds
        )
        if self.jitter:
            delay = (rng or random).uniform(0, delay)
        return delay


class Position(_Strict):
    x: float
    y: float


class Node(_Strict):
    id: str = Field(pattern=NODE_ID_PATTERN)
    type: NodeType
    subtype: str = Field(pattern=SUBTYPE_PATTERN)
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    parameters: dict[str, Any] = Field(default_factory=dict)
    retry: RetryPolicy | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, le=86_400)
    on_error: Literal["fail", "continue", "route"] = Field(
        default="fail",
        description="fail the run; continue with the error as output; or route it to the "
        "`error` port.",
    )
    position: Position | None = None

    @property
    def key(self) -> tuple[NodeType, str]:
        return (self.type, self.subtype)


class Edge(_Strict):
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    port: str = Field(default=MAIN_PORT, pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    condition: str | None = Field(
        default=None, description="A {% JSONata %} expression; the edge is taken when truthy."
    )


class WorkflowDefinition(_Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    description: str = Field(default="", max_length=10_000)
    nodes: list[Node]
    edges: list[Edge] = Field(default_factory=list)

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
