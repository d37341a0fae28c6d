"""``advance(run_id, finished)``: record finished node runs, plan what is ready next.

Shared by both engines. The run's state is cached per process; an advance plans from it
and writes everything it changed in one statement that only applies while the run's
``last_seq`` is still the one it planned from (it locks the run row as it checks). So the
hot path is one pipelined round trip (BEGIN, set the workspace, write, COMMIT), and two
engines reporting on one run at once cannot both win: the loser reloads and plans again.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.pq import TransactionStatus

from loom.blobs import BlobStore, blob_key
from loom.db import hil as hil_repo
from loom.db import runs as repo
from loom.db.database import SET_WORKSPACE, Conn, Database
from loom.engine.graph import Graph, cached_graph, graph_for
from loom.engine.run_state import Finished, NodeState, ReadyItem, RunState
from loom.engine.states import NodeStatus, RunStatus
from loom.errors import Conflict, NotFound

DEFAULT_OUTPUT_THRESHOLD = 256 * 1024
_MAX_CONFLICTS = 5


@dataclass(frozen=True)
class Invocation:
    """Everything a node needs to execute, handed over in-process by the local engine."""

    workspace_id: UUID
    run_id: UUID
    item: ReadyItem
    graph: Graph
    run_input: Any
    upstream: dict[str, Any]
    inputs: dict[str, Any]
    run: dict[str, Any]


@dataclass(frozen=True)
class Advance:
    run_id: UUID
    status: RunStatus
    ready: list[ReadyItem] = field(default_factory=list)
    invocations: dict[str, Invocation] = field(default_factory=dict)
    output: Any = None
    error: Any = None

    @property
    def finished(self) -> bool:
        return self.status.finished


def utcnow() -> datetime:
    return datetime.now(UTC)


class Engine:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        *,
        output_threshold: int = DEFAULT_OUTPUT_THRESHOLD,
        cache_size: int = 256,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.output_threshold = output_threshold
        self.clock = clock
        self._states: OrderedDict[UUID, RunState] = OrderedDict()
        self._cache_size = cache_size

    def advance(
        self,
        workspace_id: UUID,
        run_id: UUID,
        finished: Sequence[Finished] = (),
        *,
        recover: bool = False,
        cancel: str | None = None,
    ) -> Advance:
        """Record ``finished``, then plan. ``recover`` re-dispatches what was running when
        an engine stopped; ``cancel`` cancels the run with that reason."""
        for _ in range(_MAX_CONFLICTS):
            with self.db.connection() as conn:
                state = self._states.pop(run_id, None) or self._load(conn, workspace_id, run_id)
                expected_seq = state.last_seq
                now = self.clock()
                for result in finished:
                    state.apply(result, now)
                if cancel is not None:
                    state.cancel(now, cancel)
                ready = state.recover(now) if recover else []
                ready += state.plan(now)
                if not self._save(conn, state, expected_seq):
                    continue  # another engine moved this run first: plan again from fresh
            self._remember(state)
            invocations = {item.node_id: self._invocation(state, item) for item in ready}
            return Advance(run_id, state.status, ready, invocations, state.output, state.error)
        raise Conflict(
            f"Run {run_id} kept changing under this engine ({_MAX_CONFLICTS} tries).",
            solution="Make sure one engine drives each run.",
        )

    # -- loading ---------------------------------------------------------------------

    def _load(self, conn: Conn, workspace_id: UUID, run_id: UUID) -> RunState:
        """The stored run and its node runs in one round trip (its graph comes from the
        process's cache, or from one more transaction the first time a version is seen)."""
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                conn.execute(SET_WORKSPACE, (str(workspace_id),))
                run = conn.execute(repo.READ_RUN, (run_id,))
                node_runs = conn.execute(repo.NODE_RUNS, (run_id,))
                conn.execute("COMMIT")
        except psycopg.Error:
            if not conn.broken and conn.info.transaction_status is not TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise
        row = run.fetchone()
        if row is None:
            raise NotFound(f"Run {run_id} not found.", solution="Check the run id.")
        return self._state(conn, row, node_runs.fetchall())

    def _graph(self, conn: Conn, row: dict[str, Any]) -> Graph:
        workflow_id, version, body_of = row["workflow_id"], row["workflow_version"], row["body_of"]
        graph = cached_graph(workflow_id, version, body_of)
        if graph is None:
            with conn.transaction():
                conn.execute(SET_WORKSPACE, (str(row["workspace_id"]),))
                graph = graph_for(conn, workflow_id, version, body_of)
        return graph

    def _state(self, conn: Conn, row: dict[str, Any], node_runs: list[dict[str, Any]]) -> RunState:
        graph = self._graph(conn, row)
        nodes = {}
        for n in node_runs:
            output = n["output"]
            if n["output_ref"]:
                output = json.loads(self.blobs.get(row["workspace_id"], n["output_ref"]))
            nodes[n["node_id"]] = NodeState(
                node_id=n["node_id"],
                node_run_id=n["id"],
                status=NodeStatus(n["status"]),
                attempt=n["attempt"],
                input=n["input"],
                output=output,
                output_ref=n["output_ref"],
                port=n["output_port"],
                error=n["error"],
                next_attempt_at=n["next_attempt_at"],
                wake_at=n["wake_at"],
                deadline_at=n["deadline_at"],
                resume_token=n["resume_token"],
                recoveries=n["recoveries"],
                metadata=n["metadata"] or {},
                started_at=n["started_at"],
                finished_at=n["finished_at"],
            )
        trigger = row["trigger"] or {}
        return RunState(
            run_id=row["id"],
            workspace_id=row["workspace_id"],
            workflow_id=row["workflow_id"],
            version=row["workflow_version"],
            graph=graph,
            input=row["input"],
            status=RunStatus(row["status"]),
            last_seq=row["last_seq"],
            nodes=nodes,
            trigger_node=trigger.get("node_id"),
            created_at=row["created_at"],
            output=row["output"],
            error=row["error"],
        )

    # -- saving ----------------------------------------------------------------------

    def _save(self, conn: Conn, state: RunState, expected_seq: int) -> bool:
        """Write what changed in one round trip; False when the run moved on meanwhile."""
        blobs: list[dict[str, Any]] = []
        nodes = [
            self._node_row(state, node, blobs) for node in state.nodes.values() if node.changed
        ]
        events = []
        for event in state.events:
            state.last_seq += 1
            events.append(
                {
                    "seq": state.last_seq,
                    "type": event.type,
                    "node_id": event.node_id,
                    "data": event.data,
                }
            )
        finished = state.status.finished and state.status_changed
        output_ref = self._run_output_ref(state) if finished and state.output is not None else None
        run = repo.move_run_params(
            run_id=state.run_id,
            status=state.status.value,
            expected_seq=expected_seq,
            last_seq=state.last_seq,
            finished=finished,
            output=state.output,
            output_ref=output_ref,
            error=state.error,
        )
        workspace = {"ws": state.workspace_id, "run_id": state.run_id}
        try:
            with conn.pipeline(), conn.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute(SET_WORKSPACE, (str(state.workspace_id),))
                cursor.execute(repo.MOVE_RUN, run)
                if nodes:
                    cursor.executemany(repo.UPDATE_NODE, nodes)
                if events:
                    cursor.execute(
                        repo.INSERT_EVENTS, {**workspace, "events": repo.json_param(events)}
                    )
                if blobs:
                    cursor.execute(
                        repo.INSERT_BLOBS, {**workspace, "blobs": repo.json_param(blobs)}
                    )
                if state.abandoned_wait:
                    cursor.execute(hil_repo.WITHDRAW_FOR_RUN, workspace)
                cursor.execute("COMMIT")
        except psycopg.Error as exc:
            conn.execute("ROLLBACK")
            if exc.sqlstate == repo.CONFLICT_SQLSTATE:
                return False
            raise
        return True

    def _node_row(
        self, state: RunState, node: NodeState, blobs: list[dict[str, Any]]
    ) -> dict[str, Any]:
        output, ref = self._store_output(state, node, blobs)
        return repo.node_params(
            {
                "id": node.node_run_id,
                "status": node.status.value,
                "attempt": node.attempt,
                "input": node.input,
                "output": output,
                "output_ref": ref,
                "output_port": node.port,
                "error": node.error,
                "next_attempt_at": node.next_attempt_at,
                "wake_at": node.wake_at,
                "deadline_at": node.deadline_at,
                "resume_token": node.resume_token,
                "recoveries": node.recoveries,
                "metadata": node.metadata or None,
                "started_at": node.started_at,
                "finished_at": node.finished_at,
            }
        )

    def _store_output(
        self, state: RunState, node: NodeState, blobs: list[dict[str, Any]]
    ) -> tuple[Any, str | None]:
        if node.status is not NodeStatus.COMPLETED or node.output is None:
            return None, None
        if node.output_ref:
            return None, node.output_ref
        data = json.dumps(node.output, separators=(",", ":")).encode()
        if len(data) <= self.output_threshold:
            return node.output, None
        key = blob_key(
            state.workspace_id, "runs", str(state.run_id), f"{node.node_id}-{node.attempt}.json"
        )
        stored = self.blobs.put(state.workspace_id, key, data)
        blobs.append(
            {
                "key": stored.key,
                "size_bytes": stored.size_bytes,
                "sha256": stored.sha256,
                "store": stored.store,
            }
        )
        node.output_ref = stored.key
        return None, stored.key

    def _run_output_ref(self, state: RunState) -> str | None:
        """A run whose output is one large node output points at that node's blob."""
        for node_id in state.graph.leaves:
            node = state.nodes[node_id]
            if node.output_ref and node.output is state.output:
                return node.output_ref
        return None

    def _remember(self, state: RunState) -> None:
        state.events.clear()
        state.status_changed = False
        state.abandoned_wait = False
        for node in state.nodes.values():
            node.changed = False
        self._states[state.run_id] = state
        self._states.move_to_end(state.run_id)
        if len(self._states) > self._cache_size:
            self._states.popitem(last=False)

    def snapshot(self, run_id: UUID) -> list[tuple[str, str, NodeStatus, int]]:
        """(node id, type, status, attempt) per node, in order, from this process's view."""
        state = self._states.get(run_id)
        if state is None:
            return []
        return [
            (
                n,
                f"{state.graph.nodes[n].type}.{state.graph.nodes[n].subtype}",
                state.nodes[n].status,
                state.nodes[n].attempt,
            )
            for n in state.graph.order
        ]

    # -- handing over ------------------------------------------------------------------

    def invocation(
        self, workspace_id: UUID, run_id: UUID, node_id: str, attempt: int
    ) -> Invocation | None:
        """The invocation of ``node_id``'s ``attempt``, read from the stored run, for engines
        whose nodes run in other processes (Step Functions); None when the node no longer
        runs at that attempt (a late or repeated delivery)."""
        with self.db.connection() as conn:
            state = self._load(conn, workspace_id, run_id)
        node = state.nodes.get(node_id)
        if state.status.finished or node is None or node.attempt != attempt:
            return None
        if node.status not in (NodeStatus.RUNNING, NodeStatus.WAITING_INPUT):
            return None
        timeout = state.graph.nodes[node_id].timeout_seconds
        item = ReadyItem(node_id, node.node_run_id, "task", attempt, timeout_seconds=timeout)
        return self._invocation(state, item)

    def _invocation(self, state: RunState, item: ReadyItem) -> Invocation:
        return Invocation(
            workspace_id=state.workspace_id,
            run_id=state.run_id,
            item=item,
            graph=state.graph,
            run_input=state.input,
            upstream=state.outputs(state.graph.ancestors[item.node_id]),
            inputs=state.inputs_of(item.node_id),
            run=state.run_info(),
        )
