"""The node contract: ``execute(ctx, parameters, inputs) -> NodeResult``.

A node never talks to the engine. It gets its evaluated, validated parameters, the outputs
of the upstream nodes whose edges led to it, and a context; it returns an output and the
port it leaves by, or asks to wait. Its side effects must be idempotent by
``ctx.idempotency_key``, which stays the same when an interrupted attempt is resumed.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol
from uuid import UUID

from pydantic import BaseModel

from loom.workflows.definition import MAIN_PORT, Node, NodeType

if TYPE_CHECKING:
    from loom.llm.gateway import LlmGateway


@dataclass(frozen=True)
class Suspension:
    """Wait for ``resume(token, payload)``: the payload then becomes the node's result."""

    token: str
    expires_at: datetime
    request: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeResult:
    output: Any = None
    port: str = MAIN_PORT
    suspend: Suspension | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


class ChildRuns(Protocol):
    """What a node may ask of the engine: run a sub-workflow (FLOW.LOOP bodies, workflows
    as an agent's tools)."""

    async def run_child(self, input: Any, *, key: str) -> Any:
        """Run this node's body (derived from the run's pinned version) as a child run with
        idempotency ``key``; return its output."""
        ...

    async def run_workflow(self, workflow_id: UUID, input: Any, *, key: str) -> Any:
        """Run the live version of another workflow with idempotency ``key``; its output."""
        ...


class NodeServices(Protocol):
    """What the platform lends a node besides its inputs, scoped to the run's workspace."""

    async def credential(self, credential_id: str) -> Any:
        """The typed credential (see ``loom.secrets.types``), decrypted for this call only."""
        ...

    @property
    def outbound_allowlist(self) -> Sequence[str]:
        """Internal hosts (``host`` or ``host:port``) this workspace may call."""
        ...


@dataclass(frozen=True)
class HumanRequest:
    """What a HUMAN_IN_THE_LOOP node asks of people. ``request`` is shown to them (title,
    message, form); ``link_token_hash`` is the hash of the one-time respond link's token."""

    kind: Literal["approval", "input"]
    request: Mapping[str, Any]
    channels: tuple[str, ...]
    timeout_action: Literal["fail", "continue", "route"]
    expires_at: datetime
    link_token_hash: str


class HumanDesk(Protocol):
    """Where a HUMAN_IN_THE_LOOP node files its request; answers come back through the
    engine as the waiting node's result."""

    @property
    def base_url(self) -> str:
        """Where people reach this API (respond links start here)."""
        ...

    async def file(self, node_run_id: UUID, run_id: UUID, request: HumanRequest) -> UUID:
        """Store the request (replacing a pending one of the same node run); its id."""
        ...

    async def withdraw(self, request_id: UUID) -> None:
        """Cancel a pending request that could not be delivered."""
        ...


@dataclass(frozen=True)
class Turn:
    id: int
    role: Literal["user", "assistant"]
    content: str


class AgentMemory(Protocol):
    """What AI_AGENT nodes remember between runs, in their workspace: conversation turns
    per memory key with a running summary of older ones, and vector collections."""

    async def conversation(self, key: str, limit: int) -> tuple[str | None, list[Turn]]:
        """The summary, and the last ``limit`` turns it does not cover, oldest first."""
        ...

    async def add_turns(self, key: str, turns: Sequence[tuple[str, str]]) -> None: ...

    async def save_summary(self, key: str, summary: str, through: int) -> None:
        """Replace the summary with one covering every turn up to id ``through``."""
        ...

    async def remember(
        self, collection: str, content: str, embedding: list[float], metadata: dict[str, Any]
    ) -> str: ...

    async def search(
        self, collection: str, embedding: list[float], limit: int
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class AgentRequest:
    """What an AI_AGENT node bound to a governed agent asks of it. ``tools`` are the
    node's attached tools (gated like the agent's own); ``history`` its conversation
    memory; ``output`` replaces the spec's answer shape when the node sets one."""

    agent_id: UUID
    version: int | None
    prompt: str
    system: str = ""
    history: Sequence[Mapping[str, Any]] = ()
    tools: Sequence[Any] = ()
    output: Any = None


@dataclass(frozen=True)
class AgentAnswer:
    text: str
    value: Any
    model: str
    usage: Mapping[str, Any]
    tool_calls: Sequence[Mapping[str, Any]]
    episode_id: UUID
    agent_version: int
    maturity: str
    decisions: Sequence[Mapping[str, Any]] = ()
    recalled: Sequence[Mapping[str, Any]] = ()
    warnings: Sequence[str] = ()
    notices: Sequence[str] = ()


class AgentDesk(Protocol):
    """Where governed agents run: their spec, governance, recall and episodes."""

    async def run_for_node(
        self, ctx: NodeContext, request: AgentRequest, stack: AsyncExitStack
    ) -> AgentAnswer:
        """Run the agent as one episode of this node run; MCP sessions close with
        ``stack``."""
        ...


@dataclass(frozen=True)
class NodeContext:
    workspace_id: UUID
    run_id: UUID
    node_run_id: UUID
    node_id: str
    attempt: int
    run_input: Any
    upstream: Mapping[str, Any]
    run: Mapping[str, Any] = field(default_factory=dict)
    children: ChildRuns | None = None
    services: NodeServices | None = None
    humans: HumanDesk | None = None
    # An AI_AGENT node's attached TOOL and MEMORY nodes, parameters unevaluated.
    attached: tuple[Node, ...] = ()
    llm: LlmGateway | None = None
    memory: AgentMemory | None = None
    agents: AgentDesk | None = None
    # The node's own time limit (None: none), for nodes that must finish their calls first.
    timeout_seconds: float | None = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.node_run_id}:{self.attempt}"


class ParametersModel(BaseModel):
    """Base of every node's parameters: unknown parameters are errors."""

    model_config = {"extra": "forbid", "frozen": True}


Execute = Callable[[NodeContext, Any, Mapping[str, Any]], Awaitable[NodeResult]]
PortsFor = Callable[[Mapping[str, Any]], tuple[str, ...]]

NodeKind = Literal["trigger", "task", "wait", "attachment"]


@dataclass(frozen=True)
class NodeSpec:
    """What a node type is: its parameters, ports, and how it runs.

    ``kind``: ``trigger`` nodes start runs and output the run input; ``wait`` nodes are
    durable timers the engine runs itself (a Wait state on AWS); ``task`` nodes run
    ``execute``; ``attachment`` nodes (TOOL, MEMORY) never run as steps: the AI_AGENT
    node they attach to uses them. ``output_ports`` may depend on the parameters
    (FLOW.SWITCH). Parameters named in ``deferred`` reach the node unevaluated: it evaluates
    them itself, per item (FLOW.FILTER's condition) or not at all (FLOW.LOOP's body, a
    definition of its own).
    """

    type: NodeType
    subtype: str
    description: str
    parameters: builtins.type[ParametersModel]  # `type` is a field name in this class
    execute: Execute | None = None
    kind: NodeKind = "task"
    inputs: tuple[str, ...] = (MAIN_PORT,)
    outputs: tuple[str, ...] = (MAIN_PORT,)
    output_ports: PortsFor | None = None
    side_effects: bool = False
    deferred: frozenset[str] = frozenset()

    @property
    def key(self) -> tuple[NodeType, str]:
        return (self.type, self.subtype)

    def ports(self, parameters: Mapping[str, Any]) -> tuple[str, ...]:
        return self.output_ports(parameters) if self.output_ports else self.outputs

    def catalogue_entry(self) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "subtype": self.subtype,
            "description": self.description,
            "kind": self.kind,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "dynamic_outputs": self.output_ports is not None,
            "side_effects": self.side_effects,
            "parameters": self.parameters.model_json_schema(),
        }


def combined_input(inputs: Mapping[str, Any]) -> Any:
    """What a pass-through node forwards: its one input as is, several by node id."""
    if len(inputs) == 1:
        return next(iter(inputs.values()))
    return dict(inputs) if inputs else None
