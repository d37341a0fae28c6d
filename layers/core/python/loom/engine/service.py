"""Runs as users see them: start (idempotently), read, rerun from a node, resume a wait.

Starting a run only writes rows; an engine (the local runner, or Step Functions) drives it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from loom.db import runs as repo
from loom.db.async_database import AsyncDatabase
from loom.db.database import Conn, Database
from loom.engine.graph import Graph, graph_for, read_graph
from loom.engine.states import NodeStatus, RunStatus
from loom.engine.values import find_nul
from loom.errors import Conflict, InvalidInput, NotFound
from loom.workflows.versions import live_version, read_live_version

MAX_INPUT_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class StartedRun:
    run_id: UUID
    status: RunStatus
    created: bool


def check_input(input: Any, limit: int = MAX_INPUT_BYTES) -> None:
    try:
        size = len(json.dumps(input, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"The run input is not JSON: {exc}.", solution="Send a JSON value as the input."
        ) from None
    nul = find_nul(input, "input")
    if nul is not None:
        raise InvalidInput(
            f"The run input holds a NUL character at {nul}.",
            solution="Remove NUL (\\u0000) characters; they cannot be stored.",
        )
    if size > limit:
        raise InvalidInput(
            f"The run input is {size / 1_048_576:.1f} MiB; "
            f"the limit is {limit / 1_048_576:.0f} MiB.",
            solution="Store large data elsewhere (a URL, a file) and pass a reference.",
        )


def start_run(
    db: Database,
    workspace_id: UUID,
    workflow_id: UUID,
    input: Any,
    *,
    version: int | None = None,
    idempotency_key: str | None = None,
    trigger: dict[str, Any] | None = None,
    created_by: UUID | None = None,
    max_input_bytes: int = MAX_INPUT_BYTES,
) -> StartedRun:
    """Create a run of ``version`` (default: the live one). A repeated idempotency key
    returns the run it created the first time."""
    check_input(input, max_input_bytes)
    with db.tenant(workspace_id) as conn:
        if idempotency_key:
            existing = find_started(conn, workflow_id, idempotency_key)
            if existing is not None:
                return existing
        return create_run(
            conn,
            workspace_id,
            workflow_id,
            input,
            version=version,
            idempotency_key=idempotency_key,
            trigger=trigger,
            created_by=created_by,
        )


async def start_run_awaited(
    db: AsyncDatabase,
    workspace_id: UUID,
    workflow_id: UUID,
    input: Any,
    *,
    version: int | None = None,
    idempotency_key: str | None = None,
    trigger: dict[str, Any] | None = None,
    created_by: UUID | None = None,
    max_input_bytes: int = MAX_INPUT_BYTES,
) -> StartedRun:
    """``start_run`` on the event loop (the API's hot path): the same checks and rows, in
    one transaction of two round trips (the workflow, then the insert with the COMMIT)."""
    check_input(input, max_input_bytes)
    async with db.tenant(workspace_id) as conn:
        if idempotency_key:
            found = await conn.execute(repo.RUN_BY_KEY, (workflow_id, idempotency_key))
            existing = await found.fetchone()
            if existing is not None:
                return _started_before(existing)
        chosen = version if version is not None else await read_live_version(conn, workflow_id)
        graph = await read_graph(conn, workflow_id, chosen)
        inserted = await repo.add_run_once(
            conn,
            repo.TopLevelRun(
                uuid4(), workspace_id, workflow_id, chosen, input, graph.order,
                _trigger(graph, trigger), idempotency_key, created_by,
            ),
        )  # fmt: skip
    row = await inserted.fetchone()
    if row is not None:
        return StartedRun(row["id"], RunStatus.NEW, created=True)
    # Another start took the key between our read and insert: the run it made.
    (taken,) = await db.read(workspace_id, (repo.RUN_BY_KEY, (workflow_id, idempotency_key)))
    return _started_before(taken[0])


def find_started(conn: Conn, workflow_id: UUID, idempotency_key: str) -> StartedRun | None:
    """The run an earlier start with this idempotency key created, if any."""
    existing = repo.find_run_by_key(conn, workflow_id, idempotency_key)
    return None if existing is None else _started_before(existing)


def _started_before(existing: dict[str, Any]) -> StartedRun:
    return StartedRun(existing["id"], RunStatus(existing["status"]), created=False)


def create_run(
    conn: Conn,
    workspace_id: UUID,
    workflow_id: UUID,
    input: Any,
    *,
    version: int | None = None,
    idempotency_key: str | None = None,
    trigger: dict[str, Any] | None = None,
    created_by: UUID | None = None,
    run_id: UUID | None = None,
) -> StartedRun:
    """Insert the run in the caller's transaction (its input already checked); a key that
    another start used meanwhile returns that start's run. ``run_id``: the id to use."""
    chosen = version if version is not None else live_version(conn, workflow_id)
    graph = graph_for(conn, workflow_id, chosen)
    row = repo.insert_run_once(
        conn,
        repo.TopLevelRun(
            run_id or uuid4(), workspace_id, workflow_id, chosen, input, graph.order,
            _trigger(graph, trigger), idempotency_key, created_by,
        ),
    )  # fmt: skip
    if row is None:
        existing = find_started(conn, workflow_id, idempotency_key or "")
        assert existing is not None  # the conflict was on this key
        return existing
    return StartedRun(row["id"], RunStatus.NEW, created=True)


def _trigger(graph: Graph, trigger: dict[str, Any] | None) -> dict[str, Any]:
    trigger = dict(trigger or {"type": "manual"})
    node_id = trigger.get("node_id")
    if node_id is not None and node_id not in graph.triggers:
        raise InvalidInput(
            f"Node '{node_id}' is not a trigger of this workflow.",
            solution=f"Use one of: {', '.join(graph.triggers)}.",
        )
    if node_id is None:
        manual = [n for n in graph.triggers if graph.nodes[n].subtype == "MANUAL"]
        if trigger.get("type") == "manual" and not manual:
            raise InvalidInput(
                "This workflow has no TRIGGER.MANUAL node to start it by hand.",
                solution="Add a TRIGGER.MANUAL node, or use its own trigger.",
            )
        trigger["node_id"] = (manual or list(graph.triggers))[0]
    return trigger


def start_child_run(
    db: Database,
    workspace_id: UUID,
    parent_run_id: UUID,
    parent_node_run_id: UUID,
    loop_node_id: str,
    input: Any,
    key: str,
) -> tuple[UUID, RunStatus, Any, Any]:
    """Find or create the child run ``key`` of a FLOW.LOOP node run: (id, status, output,
    error). The child's definition is the loop's body in the parent's pinned version."""
    with db.tenant(workspace_id) as conn:
        parent = repo.get_run(conn, parent_run_id)
        if parent is None:
            raise NotFound(f"Run {parent_run_id} not found.", solution="Check the run id.")
        existing = repo.find_run_by_key(conn, parent["workflow_id"], key)
        if existing is not None:
            return (
                existing["id"],
                RunStatus(existing["status"]),
                existing["output"],
                existing["error"],
            )
        body_of = [*(parent["body_of"] or []), loop_node_id]
        graph = graph_for(conn, parent["workflow_id"], parent["workflow_version"], body_of)
        row = repo.insert_run(
            conn,
            workspace_id=workspace_id,
            workflow_id=parent["workflow_id"],
            version=parent["workflow_version"],
            input=input,
            node_ids=graph.order,
            trigger={"type": "loop", "node_id": graph.triggers[0] if graph.triggers else None},
            idempotency_key=key,
            parent_run_id=parent_run_id,
            parent_node_run_id=parent_node_run_id,
            body_of=body_of,
        )
    return row["id"], RunStatus.NEW, None, None


def rerun_from(
    db: Database,
    workspace_id: UUID,
    run_id: UUID,
    from_node: str,
    *,
    created_by: UUID | None = None,
) -> UUID:
    """A new run of the same version that reuses every finished result not downstream of
    ``from_node`` and executes ``from_node`` and what follows it again."""
    with db.tenant(workspace_id) as conn:
        original = repo.get_run(conn, run_id)
        if original is None:
            raise NotFound(f"Run {run_id} not found.", solution="Check the run id.")
        if original["parent_run_id"] is not None:
            raise InvalidInput(
                "A loop iteration cannot be rerun on its own.",
                solution="Rerun the parent run from the loop node.",
            )
        if not RunStatus(original["status"]).finished:
            raise Conflict(
                f"Run {run_id} is still {original['status']}.",
                solution="Wait for it to finish, or cancel it, then rerun.",
            )
        graph = graph_for(conn, original["workflow_id"], original["workflow_version"])
        if from_node not in graph.nodes:
            raise InvalidInput(
                f"Run {run_id}'s workflow has no node '{from_node}'.",
                solution=f"Choose one of: {', '.join(graph.order)}.",
            )
        if graph.specs[from_node].kind == "trigger":
            raise InvalidInput(
                "Rerunning from a trigger is a new run.", solution="Start a new run instead."
            )
        states = {n["node_id"]: n for n in repo.node_runs(conn, run_id)}
        unfinished = [
            a
            for a in sorted(graph.ancestors[from_node])
            if states[a]["status"] not in ("completed", "skipped")
        ]
        if unfinished:
            raise Conflict(
                f"Cannot rerun from '{from_node}': upstream node(s) {', '.join(unfinished)} "
                "did not finish in that run.",
                solution="Rerun from the earliest node that failed instead.",
            )
        redo = graph.descendants(from_node) | {from_node}
        reuse = [
            n
            for n in graph.order
            if n not in redo
            and states[n]["status"] in (NodeStatus.COMPLETED.value, NodeStatus.SKIPPED.value)
        ]
        row = repo.insert_run(
            conn,
            workspace_id=workspace_id,
            workflow_id=original["workflow_id"],
            version=original["workflow_version"],
            input=original["input"],
            node_ids=graph.order,
            trigger=original["trigger"],
            rerun_of=run_id,
            rerun_from_node=from_node,
            created_by=created_by,
        )
        repo.copy_node_results(conn, new_run_id=row["id"], old_run_id=run_id, node_ids=reuse)
    return UUID(str(row["id"]))


def resume(db: Database, workspace_id: UUID, token: str) -> tuple[UUID, str, int]:
    """Find the node run waiting on ``token``: (run id, node id, attempt). The caller
    reports the payload to the engine as that node's result."""
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    with db.tenant(workspace_id) as conn:
        row = repo.waiting_node_run(conn, token_hash)
    if row is None:
        raise NotFound(
            "Nothing is waiting on that resume token.",
            solution="It may have been used already or have expired.",
        )
    return row["run_id"], row["node_id"], int(row["attempt"])


@dataclass(frozen=True)
class RunDetail:
    run: dict[str, Any]
    nodes: list[dict[str, Any]]


def get_run(db: Database, workspace_id: UUID, run_id: UUID) -> RunDetail:
    with db.tenant(workspace_id) as conn:
        return _detail(conn, run_id)


async def read_run(db: AsyncDatabase, workspace_id: UUID, run_id: UUID) -> RunDetail:
    """``get_run``, awaited (the API's hot path): one round trip."""
    run, nodes = await db.read(
        workspace_id, (repo.READ_RUN, (run_id,)), (repo.NODE_RUNS, (run_id,))
    )
    if not run:
        raise _run_not_found(run_id)
    return RunDetail(run[0], nodes)


def _detail(conn: Conn, run_id: UUID) -> RunDetail:
    run = repo.get_run(conn, run_id)
    if run is None:
        raise _run_not_found(run_id)
    return RunDetail(run, repo.node_runs(conn, run_id))


def _run_not_found(run_id: UUID) -> NotFound:
    return NotFound(f"Run {run_id} not found.", solution="Check the run id.")


async def read_runs(
    db: AsyncDatabase,
    workspace_id: UUID,
    *,
    workflow_id: UUID | None,
    status: str | None,
    limit: int,
    before: datetime | None,
) -> list[dict[str, Any]]:
    """Top-level runs, newest first, ``before`` a creation time; one round trip."""
    params = repo.list_runs_params(
        workflow_id=workflow_id, status=status, limit=limit, before=before
    )
    (rows,) = await db.read(workspace_id, (repo.LIST_RUNS, params))
    return rows


EventsPage = tuple[list[dict[str, Any]], bool]


async def read_events_page(
    db: AsyncDatabase, workspace_id: UUID, run_id: UUID, after: int, limit: int
) -> EventsPage:
    """Events after ``after``, and whether the run is over with nothing left to send; one
    round trip. The run is read first: an event it counts is committed, so none is missed."""
    run, events = await db.read(
        workspace_id, (repo.READ_RUN, (run_id,)), (repo.EVENTS_AFTER, (run_id, after, limit))
    )
    if not run:
        raise _run_not_found(run_id)
    last = events[-1]["seq"] if events else after
    finished = RunStatus(run[0]["status"]).finished and last >= run[0]["last_seq"]
    return events, finished
