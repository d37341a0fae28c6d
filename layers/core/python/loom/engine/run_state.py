"""One run's state in memory, and the rules that move it: record finished node runs, then
plan what is ready. No I/O here; ``loom.engine.advance`` loads and stores it.

The rules: a node runs when all its incoming edges are resolved and at least one is
active (FLOW.MERGE in ``first`` mode: as soon as one is active). An edge is active when
its source completed, left by the edge's port, and the edge's condition (if any) holds.
A node whose incoming edges all resolve inactive is skipped, and the skip propagates. A
failed attempt is retried under the node's policy; when attempts run out, ``on_error``
decides: fail the run, continue with the error as output, or route it to the ``error``
port. Every transition appends an event.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from loom.engine.graph import Graph
from loom.engine.states import NodeStatus, RunStatus
from loom.errors import LoomError
from loom.nodes.base import combined_input
from loom.nodes.flow_wait import WaitParameters
from loom.workflows.definition import ERROR_PORT, MAIN_PORT, Edge, RetryPolicy

if TYPE_CHECKING:
    from loom.expressions import ExpressionError

# loom.expressions (jsonata) is imported where an edge condition or a wait is evaluated.
# The functions that plan runs load it with loom.engine.invoke; the many that only read
# reports and states from here (the API, the triggers, the human-wait functions, through
# loom.engine.dispatch) never evaluate anything.

DEFAULT_RETRY = RetryPolicy(max_attempts=1)
Outcome = Literal["completed", "failed", "suspended"]


@dataclass(frozen=True)
class Finished:
    """What became of one dispatched node run (the engine reports it to ``advance``)."""

    node_id: str
    attempt: int
    outcome: Outcome
    output: Any = None
    port: str = MAIN_PORT
    error: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    resume_token_hash: str | None = None
    expires_at: datetime | None = None
    duration_ms: float | None = None


@dataclass
class NodeState:
    node_id: str
    node_run_id: UUID
    status: NodeStatus = NodeStatus.PENDING
    attempt: int = 0
    input: Any = None
    output: Any = None
    output_ref: str | None = None
    port: str | None = None
    error: Mapping[str, Any] | None = None
    next_attempt_at: datetime | None = None
    wake_at: datetime | None = None
    deadline_at: datetime | None = None
    resume_token: str | None = None
    recoveries: int = 0
    metadata: Mapping[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    changed: bool = False

    def set(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self.changed = True


@dataclass(frozen=True)
class ReadyItem:
    """A node run to dispatch. ``kind`` task: execute it (not before ``not_before``);
    wait: complete it at ``wake_at``."""

    node_id: str
    node_run_id: UUID
    kind: Literal["task", "wait"]
    attempt: int
    not_before: datetime | None = None
    wake_at: datetime | None = None
    timeout_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "node_run_id": str(self.node_run_id),
            "kind": self.kind,
            "attempt": self.attempt,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "wake_at": self.wake_at.isoformat() if self.wake_at else None,
            "timeout_seconds": self.timeout_seconds,
        }


@dataclass
class Event:
    type: str
    node_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunState:
    run_id: UUID
    workspace_id: UUID
    workflow_id: UUID
    version: int
    graph: Graph
    input: Any
    status: RunStatus
    last_seq: int
    nodes: dict[str, NodeState]
    trigger_node: str | None = None
    created_at: datetime | None = None
    output: Any = None
    error: Mapping[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    status_changed: bool = False
    # The run ended while a node waited for a person: its request must be withdrawn.
    abandoned_wait: bool = False
    # What planning must look at next (see ``_candidates``).
    _examine_all: bool = True
    _finalized: set[str] = field(default_factory=set)
    _retrying: set[str] = field(default_factory=set)

    # -- recording -------------------------------------------------------------------

    def emit(self, type_: str, node_id: str | None = None, **data: Any) -> None:
        self.events.append(Event(type_, node_id, data))

    def run_info(self) -> dict[str, Any]:
        return {
            "id": str(self.run_id),
            "workflow_id": str(self.workflow_id),
            "version": self.version,
            "started_at": self.created_at.isoformat() if self.created_at else None,
        }

    def outputs(self, among: frozenset[str] | None = None) -> dict[str, Any]:
        """Outputs of completed nodes (those in ``among`` if given), for ``$nodes``."""
        return {
            n.node_id: n.output
            for n in self.nodes.values()
            if n.status is NodeStatus.COMPLETED and (among is None or n.node_id in among)
        }

    def apply(self, finished: Finished, now: datetime) -> None:
        node = self.nodes.get(finished.node_id)
        if node is None or self.status.finished:
            return
        if node.attempt != finished.attempt or node.status not in (
            NodeStatus.RUNNING,
            NodeStatus.WAITING_INPUT,
        ):
            return  # a late or repeated report: recorded once already
        took = {"duration_ms": round(finished.duration_ms, 3)} if finished.duration_ms else {}
        if finished.outcome == "completed":
            # A wait passes on what it held when it started; the engine only says "woke".
            waited = self.graph.specs[node.node_id].kind == "wait"
            output = node.input if waited else finished.output
            node.set(
                status=NodeStatus.COMPLETED,
                output=output,
                port=finished.port,
                error=None,
                finished_at=now,
                metadata=dict(finished.metadata),
                resume_token=None,
                wake_at=None,
                deadline_at=None,
            )
            self.emit(
                "node_completed", node.node_id, port=finished.port, attempt=node.attempt, **took
            )
            for warning in finished.metadata.get("warnings", ()):
                self.emit("node_warning", node.node_id, message=str(warning))
            self._finalized.add(node.node_id)
        elif finished.outcome == "suspended":
            node.set(
                status=NodeStatus.WAITING_INPUT,
                resume_token=finished.resume_token_hash,
                deadline_at=finished.expires_at,
                metadata=dict(finished.metadata),
            )
            expires = finished.expires_at.isoformat() if finished.expires_at else None
            self.emit("node_waiting", node.node_id, expires_at=expires)
        else:
            self._fail(node, dict(finished.error or {}), now, took)

    def _fail(
        self, node: NodeState, error: dict[str, Any], now: datetime, took: Mapping[str, Any]
    ) -> None:
        definition = self.graph.nodes[node.node_id]
        policy = definition.retry or DEFAULT_RETRY
        retryable = error.get("retryable", True)
        if retryable and node.attempt < policy.max_attempts:
            delay = policy.delay_after(node.attempt)
            node.set(
                status=NodeStatus.PENDING,
                error=error,
                next_attempt_at=now + timedelta(seconds=delay),
            )
            self.emit(
                "node_retry_scheduled",
                node.node_id,
                attempt=node.attempt,
                delay_seconds=round(delay, 3),
                error=error,
                **took,
            )
            self._retrying.add(node.node_id)
            return
        self.emit(
            "node_failed",
            node.node_id,
            attempt=node.attempt,
            error=error,
            on_error=definition.on_error,
            **took,
        )
        if definition.on_error == "fail":
            node.set(status=NodeStatus.FAILED, error=error, finished_at=now, next_attempt_at=None)
            self._finish(RunStatus.ERROR, now, error={"node_id": node.node_id, **error})
            return
        port = ERROR_PORT if definition.on_error == "route" else MAIN_PORT
        node.set(
            status=NodeStatus.COMPLETED,
            error=error,
            output={"error": error},
            port=port,
            finished_at=now,
            next_attempt_at=None,
        )
        self.emit("node_completed", node.node_id, port=port, attempt=node.attempt, error=True)
        self._finalized.add(node.node_id)

    # -- planning --------------------------------------------------------------------

    def plan(self, now: datetime) -> list[ReadyItem]:
        """Mark what is ready as running and return it; skip what can never run.

        Only nodes that may have changed are examined: on the first plan of a loaded state
        every pending node, afterwards the successors of nodes that finished since.
        """
        if self.status.finished:
            return []
        if self.status is RunStatus.NEW:
            self._start(now)
        ready: list[ReadyItem] = []
        queue = self._candidates()
        queued = set(queue)
        while queue and not self.status.finished:
            _, node_id = heapq.heappop(queue)
            self._plan_node(node_id, now, ready)
            for entry in self._candidates():
                if entry not in queued:
                    queued.add(entry)
                    heapq.heappush(queue, entry)
        if self.status.finished:
            return []
        self._settle(now)
        return ready

    def _plan_node(self, node_id: str, now: datetime, ready: list[ReadyItem]) -> None:
        node = self.nodes[node_id]
        if node.status is not NodeStatus.PENDING:
            return
        if node.attempt > 0:  # a retry whose time was set when the attempt failed
            ready.append(self._dispatch(node, now, not_before=node.next_attempt_at))
            return
        try:
            decision = self._decide(node_id)
        except EdgeConditionFailed as exc:
            self.fail_node(node_id, exc.to_dict(), now)
            return
        if decision == "skip":
            node.set(status=NodeStatus.SKIPPED, finished_at=now)
            self.emit("node_skipped", node_id)
            self._finalized.add(node_id)
        elif decision == "ready":
            item = self._ready(node, now)
            if item is not None:
                ready.append(item)

    def _candidates(self) -> list[tuple[int, str]]:
        """Pending nodes worth a look, keyed by topological position, as a heap."""
        position = self.graph.position
        if self._examine_all:
            self._examine_all = False
            self._finalized.clear()
            found = [
                (position[n], n) for n, s in self.nodes.items() if s.status is NodeStatus.PENDING
            ]
        else:
            found = [
                (position[e.target], e.target)
                for n in self._finalized
                for e in self.graph.outgoing[n]
            ]
            found += [(position[n], n) for n in self._retrying]
            self._finalized.clear()
            self._retrying.clear()
        heapq.heapify(found)
        return found

    def _start(self, now: datetime) -> None:
        chosen = self.trigger_node or (self.graph.triggers[0] if self.graph.triggers else None)
        for trigger in self.graph.triggers:
            node = self.nodes[trigger]
            if node.status is not NodeStatus.PENDING:
                continue
            if trigger == chosen:
                node.set(
                    status=NodeStatus.COMPLETED,
                    output=self.input,
                    port=MAIN_PORT,
                    attempt=1,
                    started_at=now,
                    finished_at=now,
                )
                self.emit("node_completed", trigger, port=MAIN_PORT, attempt=1, trigger=True)
            else:
                node.set(status=NodeStatus.SKIPPED, finished_at=now)
                self.emit("node_skipped", trigger)
            self._finalized.add(trigger)
        self._set_status(RunStatus.RUNNING)
        self.emit("run_started", trigger=chosen)

    def _decide(self, node_id: str) -> Literal["ready", "skip", "wait"]:
        edges = self.graph.incoming[node_id]
        if not edges:
            return "skip"  # an unchosen trigger, or a node nothing leads to
        first_wins = self._merge_mode(node_id) == "first"
        resolved = 0
        active = 0
        for edge in edges:
            state = self._edge(edge)
            if state == "active":
                active += 1
                if first_wins:
                    return "ready"
            if state != "open":
                resolved += 1
        if resolved < len(edges):
            return "wait"
        return "ready" if active else "skip"

    def _merge_mode(self, node_id: str) -> str | None:
        definition = self.graph.nodes[node_id]
        if (definition.type.value, definition.subtype) != ("FLOW", "MERGE"):
            return None
        return str(definition.parameters.get("mode", "wait_all"))

    def _edge(self, edge: Edge) -> Literal["active", "inactive", "open"]:
        source = self.nodes[edge.source]
        if not source.status.finished:
            return "open"
        if source.status is not NodeStatus.COMPLETED or source.port != edge.port:
            return "inactive"
        if edge.condition is None:
            return "active"
        from loom.expressions import ExpressionContext, ExpressionError, evaluate  # see above

        scope = ExpressionContext(
            input=self.input,
            nodes=self.outputs(self.graph.ancestors[edge.target]),
            run=self.run_info(),
        )
        where = f"edges.{edge.source}->{edge.target}.condition"
        try:
            return "active" if evaluate(edge.condition, scope, where=where) else "inactive"
        except ExpressionError as exc:
            raise EdgeConditionFailed(edge, exc) from exc

    def inputs_of(self, node_id: str) -> dict[str, Any]:
        """Outputs of the upstream nodes whose edges into ``node_id`` are active."""
        found: dict[str, Any] = {}
        for edge in self.graph.incoming[node_id]:
            try:
                if self._edge(edge) == "active":
                    found[edge.source] = self.nodes[edge.source].output
            except EdgeConditionFailed:
                continue
        return found

    def _ready(self, node: NodeState, now: datetime) -> ReadyItem | None:
        spec = self.graph.specs[node.node_id]
        if spec.kind == "wait":
            return self._start_wait(node, now)
        return self._dispatch(node, now)

    def _dispatch(
        self, node: NodeState, now: datetime, not_before: datetime | None = None
    ) -> ReadyItem:
        attempt = node.attempt + 1
        node.set(
            status=NodeStatus.RUNNING,
            attempt=attempt,
            started_at=node.started_at or now,
            next_attempt_at=not_before,
        )
        self.emit("node_started", node.node_id, attempt=attempt)
        return self._item(node)

    def _item(self, node: NodeState) -> ReadyItem:
        definition = self.graph.nodes[node.node_id]
        if self.graph.specs[node.node_id].kind == "wait":
            return ReadyItem(
                node.node_id, node.node_run_id, "wait", node.attempt, wake_at=node.wake_at
            )
        return ReadyItem(
            node.node_id,
            node.node_run_id,
            "task",
            node.attempt,
            not_before=node.next_attempt_at,
            timeout_seconds=definition.timeout_seconds,
        )

    def _start_wait(self, node: NodeState, now: datetime) -> ReadyItem | None:
        from loom.expressions import ExpressionContext, ExpressionError, evaluate  # see above

        raw = self.graph.nodes[node.node_id].parameters
        scope = ExpressionContext(
            input=self.input,
            nodes=self.outputs(self.graph.ancestors[node.node_id]),
            run=self.run_info(),
        )
        node.set(status=NodeStatus.RUNNING, attempt=node.attempt + 1, started_at=now)
        try:
            values = evaluate(raw, scope, where=f"nodes.{node.node_id}.parameters")
            wake_at = WaitParameters.model_validate(values).wake_at(now)
        except (ExpressionError, ValueError) as exc:
            error = exc.to_dict() if isinstance(exc, LoomError) else _invalid(node.node_id, exc)
            self._fail(node, {**error, "retryable": False}, now, {})
            return None
        node.set(wake_at=wake_at, input=combined_input(self.inputs_of(node.node_id)))
        self.emit("node_started", node.node_id, attempt=node.attempt, wake_at=wake_at.isoformat())
        return self._item(node)

    # -- recovery, cancellation, settling ---------------------------------------------

    def recover(self, now: datetime) -> list[ReadyItem]:
        """Dispatch again what was running when its engine stopped.

        Waits resume at their wake-up time. A task resumes as the same attempt, so its
        idempotency key is unchanged; a task interrupted more often than its policy allows
        attempts fails instead.
        """
        items: list[ReadyItem] = []
        for node_id in self.graph.order:
            node = self.nodes[node_id]
            if node.status is not NodeStatus.RUNNING:
                continue
            if self.graph.specs[node_id].kind == "wait":
                items.append(self._item(node))
                continue
            policy = self.graph.nodes[node_id].retry or DEFAULT_RETRY
            node.set(recoveries=node.recoveries + 1)
            if node.recoveries > policy.max_attempts:
                error = {
                    "code": "interrupted",
                    "retryable": False,
                    "message": f"Node '{node_id}' was interrupted {node.recoveries} times "
                    "by engine restarts.",
                    "solution": "Check what stops the engine while this node runs.",
                }
                self._fail(node, error, now, {})
                continue
            self.emit("node_resumed", node_id, attempt=node.attempt, recoveries=node.recoveries)
            items.append(self._item(node))
        return items

    def cancel(self, now: datetime, reason: str) -> None:
        if self.status.finished:
            return
        self._finish(RunStatus.CANCELLED, now, error={"code": "cancelled", "message": reason})

    def _finish(self, status: RunStatus, now: datetime, error: Mapping[str, Any] | None) -> None:
        for node in self.nodes.values():
            if not node.status.finished:
                self.abandoned_wait |= node.status is NodeStatus.WAITING_INPUT
                node.set(status=NodeStatus.CANCELLED, finished_at=now, resume_token=None)
        self.error = error
        self._set_status(status)
        if status is RunStatus.SUCCESS:
            self.output = self._run_output()
        self.emit(f"run_{status.value.lower()}", error=dict(error) if error else None)

    def _settle(self, now: datetime) -> None:
        statuses = {n.status for n in self.nodes.values()}
        if all(s.finished for s in statuses):
            self._finish(RunStatus.SUCCESS, now, error=None)
        elif NodeStatus.WAITING_INPUT in statuses and NodeStatus.RUNNING not in statuses:
            # Pending nodes cannot move by themselves (a scheduled retry is ``running``):
            # nothing happens until someone answers.
            self._set_status(RunStatus.WAITING_FOR_HUMAN)
        else:
            self._set_status(RunStatus.RUNNING)

    def _set_status(self, status: RunStatus) -> None:
        if status is not self.status:
            self.status = status
            self.status_changed = True

    def _run_output(self) -> Any:
        """The output of the one completed leaf, or ``{leaf_id: output}`` for several."""
        done = [n for n in self.graph.leaves if self.nodes[n].status is NodeStatus.COMPLETED]
        if len(done) == 1:
            return self.nodes[done[0]].output
        return {n: self.nodes[n].output for n in done}

    def fail_node(self, node_id: str, error: Mapping[str, Any], now: datetime) -> None:
        """Fail a node for a reason found by the engine (an edge condition that throws)."""
        node = self.nodes[node_id]
        if node.status is NodeStatus.PENDING:
            node.set(status=NodeStatus.RUNNING, attempt=node.attempt + 1, started_at=now)
        self._fail(node, {**error, "retryable": False}, now, {})


class EdgeConditionFailed(LoomError):
    code = "expression_error"

    def __init__(self, edge: Edge, cause: ExpressionError) -> None:
        super().__init__(cause.message, solution=cause.solution)
        self.edge = edge


def _invalid(node_id: str, exc: Exception) -> dict[str, Any]:
    return {
        "code": "invalid_parameters",
        "message": f"Node '{node_id}' has invalid parameters: {exc}",
        "solution": "Fix the parameters (or the expressions that produce them).",
    }
