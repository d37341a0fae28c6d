"""Dry run: a draft runs against sample input, and nothing is sent.

Why not an engine run in a scratch mode: a run is rows (``runs``, ``node_runs``, events)
that ``GET /v1/runs`` lists and both engines resume, and its nodes get the real desk, memory
and credentials. Instead the engine's own pieces run in memory: ``RunState`` (the same
rules: edges, ports, conditions, skips, MERGE, retries, on_error) plans, and
``engine.invoke`` executes the nodes that only read - transforms, flow control, CODE in
its sandbox, HTTP GET and HEAD through the outbound choke point. Every node that would act
on the world is replaced by a recorder: it evaluates the node's parameters exactly as the
engine would and reports what it would have sent. Recorded are: nodes whose spec declares
side effects (EXTERNAL_ACTION, HUMAN_IN_THE_LOOP, AI_AGENT), HTTP requests other than GET
and HEAD, and WAIT (it would only wait). Approvals take a recorded decision; AI agents are
recorded unless the request asks to call them and they have no attachments (tools may act,
memory writes); their usage counts against the workspace, as no run exists. Nothing else
is stored: the report is the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel

from loom.engine.advance import Invocation
from loom.engine.graph import Graph
from loom.engine.invoke import invoke, prepare_parameters
from loom.engine.run_state import Finished, NodeState, ReadyItem, RunState
from loom.engine.states import NodeStatus, RunStatus
from loom.errors import LoomError
from loom.llm.calls import CallContext, Completion, StreamEvent
from loom.llm.gateway import LlmGateway
from loom.nodes.base import NodeServices, NodeSpec
from loom.workflows.definition import MAIN_PORT, Node, NodeType, WorkflowDefinition

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
AgentMode = Literal["record", "call"]
Decision = Literal["approve", "reject"]


class DryRunFailed(LoomError):
    code = "dry_run_failed"
    retryable = False


@dataclass(frozen=True)
class DryRunOptions:
    input: Any = None
    agents: AgentMode = "record"
    approvals: Decision = "approve"
    deadline_seconds: float = 60.0


@dataclass
class _Report:
    recorded: list[dict[str, Any]] = field(default_factory=list)
    states: list[RunState] = field(default_factory=list)


class DryRun:
    def __init__(
        self,
        workspace_id: UUID,
        session_id: UUID,
        options: DryRunOptions,
        *,
        services: NodeServices | None,
        llm: LlmGateway | None,
    ) -> None:
        self.workspace_id = workspace_id
        self.session_id = session_id
        self.options = options
        self.services = services
        self.llm = _Unbound(llm) if llm is not None else None
        self.report = _Report()

    async def run(self, definition: WorkflowDefinition) -> dict[str, Any]:
        graph = Graph.build(definition)
        timed_out = False
        try:
            state = await asyncio.wait_for(
                self._drive(graph, self.options.input, ""), self.options.deadline_seconds
            )
        except TimeoutError:
            state, timed_out = self.report.states[0], True
        recorded = {r["node_id"] for r in self.report.recorded}
        return {
            "status": "TIMED_OUT" if timed_out else state.status.value,
            "output": state.output,
            "error": dict(state.error) if state.error else None,
            "nodes": [_node_result(graph, state.nodes[n], recorded) for n in graph.order],
            "recorded": self.report.recorded,
        }

    async def _drive(self, graph: Graph, run_input: Any, prefix: str) -> RunState:
        now = datetime.now(UTC)
        state = RunState(
            run_id=uuid4(),
            workspace_id=self.workspace_id,
            workflow_id=self.session_id,
            version=0,
            graph=graph,
            input=run_input,
            status=RunStatus.NEW,
            last_seq=0,
            nodes={node_id: NodeState(node_id, uuid4()) for node_id in graph.nodes},
            created_at=now,
        )
        self.report.states.append(state)
        while True:
            ready = state.plan(datetime.now(UTC))
            if state.status.finished or not ready:
                return state
            finished = await asyncio.gather(*(self._one(state, item, prefix) for item in ready))
            for result in finished:
                state.apply(result, datetime.now(UTC))

    async def _one(self, state: RunState, item: ReadyItem, prefix: str) -> Finished:
        node = state.graph.nodes[item.node_id]
        if item.kind == "wait":
            until = item.wake_at.isoformat() if item.wake_at else None
            self._record(prefix, node, {"wait_until": until})
            return Finished(item.node_id, item.attempt, "completed")
        invocation = Invocation(
            workspace_id=state.workspace_id,
            run_id=state.run_id,
            item=item,
            graph=state.graph,
            run_input=state.input,
            upstream=state.outputs(state.graph.ancestors[item.node_id]),
            inputs=state.inputs_of(item.node_id),
            run=state.run_info(),
        )
        spec = state.graph.specs[item.node_id]
        try:
            if self._runs_for_real(state.graph, node, spec, invocation):
                return await invoke(
                    invocation,
                    children=_Bodies(self, invocation, prefix),
                    services=self.services,
                    llm=self.llm,
                )
            return self._recorder(prefix, node, spec, invocation)
        except LoomError as exc:
            error = {**exc.to_dict(), "retryable": False}
            return Finished(item.node_id, item.attempt, "failed", error=error)

    def _runs_for_real(
        self, graph: Graph, node: Node, spec: NodeSpec, invocation: Invocation
    ) -> bool:
        if node.type is NodeType.AI_AGENT:
            return self.options.agents == "call" and not graph.attached.get(node.id)
        if (node.type, node.subtype) == (NodeType.ACTION, "HTTP_REQUEST"):
            method = getattr(prepare_parameters(spec, node, invocation), "method", "GET")
            return str(method) in READ_ONLY_METHODS
        return not spec.side_effects

    def _recorder(
        self, prefix: str, node: Node, spec: NodeSpec, invocation: Invocation
    ) -> Finished:
        """What the node would have sent, and the output it stands in with."""
        item = invocation.item
        params = prepare_parameters(spec, node, invocation)
        shown = _shown(params)
        self._record(prefix, node, shown)
        if (node.type, node.subtype) == (NodeType.HUMAN_IN_THE_LOOP, "APPROVAL"):
            decision = shown.get("default") or self.options.approvals
            output = {"approved": decision == "approve", "data": None, "responded_by": None}
            return Finished(item.node_id, item.attempt, "completed", output=output, port=decision)
        if node.type is NodeType.HUMAN_IN_THE_LOOP:
            return Finished(item.node_id, item.attempt, "completed", output=shown.get("default"))
        output = {"dry_run": True, "would_send": shown}
        return Finished(item.node_id, item.attempt, "completed", output=output, port=MAIN_PORT)

    def _record(self, prefix: str, node: Node, shown: dict[str, Any]) -> None:
        self.report.recorded.append(
            {
                "node_id": f"{prefix}{node.id}",
                "type": node.type.value,
                "subtype": node.subtype,
                "would_send": shown,
            }
        )


class _Unbound(LlmGateway):
    """The gateway for agents a dry run calls: their usage counts against the workspace,
    not against a run - a dry run has no run rows to refer to."""

    def __init__(self, inner: LlmGateway) -> None:  # a proxy: ``inner`` holds the state
        self._inner = inner

    async def complete(self, call: CallContext, **options: Any) -> Completion:
        return await self._inner.complete(_unbound(call), **options)

    async def stream(self, call: CallContext, **options: Any) -> AsyncGenerator[StreamEvent, None]:
        async for event in self._inner.stream(_unbound(call), **options):
            yield event

    async def embed(self, call: CallContext, **options: Any) -> list[list[float]]:
        return await self._inner.embed(_unbound(call), **options)


def _unbound(call: CallContext) -> CallContext:
    return replace(call, run_id=None, node_run_id=None)


class _Bodies:
    """FLOW.LOOP's view of a dry run: each body runs in memory, recorders and all."""

    def __init__(self, dry_run: DryRun, parent: Invocation, prefix: str) -> None:
        self.dry_run = dry_run
        self.parent = parent
        self.prefix = prefix

    async def run_child(self, input: Any, *, key: str) -> Any:
        node_id = self.parent.item.node_id
        body = Graph.build(self.parent.graph.body([node_id]))
        index = key.rsplit(":", 1)[-1]
        state = await self.dry_run._drive(body, input, f"{self.prefix}{node_id}[{index}].")
        if state.status is not RunStatus.SUCCESS:
            reason = (state.error or {}).get("message", state.status.value)
            raise DryRunFailed(
                f"Iteration {index} of loop '{node_id}' failed: {reason}",
                solution="See the loop body's nodes in the dry run report.",
            )
        return state.output

    async def run_workflow(self, workflow_id: UUID, input: Any, *, key: str) -> Any:
        raise DryRunFailed(
            f"A dry run does not run other workflows (workflow {workflow_id}).",
            solution="Dry-run that workflow on its own.",
        )


def _shown(params: BaseModel) -> dict[str, Any]:
    shown: dict[str, Any] = params.model_dump(mode="json", exclude_none=True)
    return shown


def _node_result(graph: Graph, node: NodeState, recorded: set[str]) -> dict[str, Any]:
    definition = graph.nodes[node.node_id]
    status = {NodeStatus.PENDING: "not_reached", NodeStatus.RUNNING: "cut_off"}.get(
        node.status, node.status.value
    )
    return {
        "node_id": node.node_id,
        "type": definition.type.value,
        "subtype": definition.subtype,
        "status": status,
        "port": node.port,
        "output": node.output,
        "error": dict(node.error) if node.error else None,
        "recorded": node.node_id in recorded,
    }
