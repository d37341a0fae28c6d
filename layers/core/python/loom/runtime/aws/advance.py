"""The Advance step of ``workflow_run.asl.json``: record what the last round reported,
plan the next, and tell the state machine where to go.

Routes: ``one`` (a single plain task, also as ``item``: run it without a Map), ``many``
(the Map), ``done`` (the run finished), ``continued`` (handed over to a new execution
before the history limit), ``stalled`` (nothing in flight, yet unfinished: the execution
fails, for an alarm).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from loom.db import executions
from loom.engine.advance import Advance, Invocation
from loom.engine.run_state import ReadyItem
from loom.errors import ConfigError, LoomError
from loom.runtime.aws.dispatcher import execution_arn, start
from loom.runtime.aws.platform import AwsPlatform
from loom.runtime.aws.wire import timestamp, unstage
from loom.workflows.definition import NodeType

# The Map's results share the 256 KiB state limit; each report gets its share of this.
INLINE_BUDGET = 160 * 1024
MIN_INLINE = 1024
# The Step Functions timer of a human wait runs this much past the request's own deadline,
# so the request has expired when the timer fires (the timeout step forces it anyway).
HIL_TIMER_MARGIN_SECONDS = 10
# Upper bounds of the history events one round adds: Advance and its Choice, and per item
# (Map iteration, Choice, a waited retry, the Lambda task with its service retries).
ROUND_EVENTS = 16
ITEM_EVENTS = 24


def advance_round(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    workspace_id = UUID(str(event["workspace_id"]))
    run_id = UUID(str(event["run_id"]))
    generation = int(event.get("generation", 0))
    reports = (event.get("result") or {}).get("finished") or []
    finished = [unstage(report, platform.blobs, workspace_id) for report in reports]
    engine = platform.engine
    state = engine.advance(workspace_id, run_id, finished)
    if not state.finished and not state.ready:
        # Nothing in flight yet unfinished: re-dispatch what the store says is running.
        state = engine.advance(workspace_id, run_id, recover=True)
    items = [_item(platform, state, item) for item in state.ready]
    reply: dict[str, Any] = {
        "workspace_id": str(workspace_id),
        "run_id": str(run_id),
        "status": state.status.value,
        "generation": generation,
        "events": int(event.get("events", 0)) + ROUND_EVENTS + ITEM_EVENTS * len(items),
        "items": items,
        "inline_bytes": max(MIN_INLINE, INLINE_BUDGET // max(1, len(items))),
        "result": {"finished": []},
        "route": _route(state, items),
    }
    if reply["route"] == "one":
        reply["item"] = items[0]
    budget = platform.settings.history_event_budget
    if reply["route"] in ("one", "many") and reply["events"] > budget:
        return _continue(platform, reply)
    return reply


def _route(state: Advance, items: list[dict[str, Any]]) -> str:
    if state.finished:
        return "done"
    if not items:
        return "stalled"
    single = items[0]
    if len(items) == 1 and single["mode"] == "task" and single["wait_until"] is None:
        return "one"
    return "many"


def _item(platform: AwsPlatform, state: Advance, item: ReadyItem) -> dict[str, Any]:
    invocation = state.invocations[item.node_id]
    node = invocation.graph.nodes[item.node_id]
    found: dict[str, Any] = {
        "node_id": item.node_id,
        "node_run_id": str(item.node_run_id),
        "attempt": item.attempt,
        "mode": "task",
        "function": None,
        "wait_until": None,
    }
    if item.kind == "wait":
        found.update(mode="wait", wait_until=timestamp(_due(item.wake_at, platform)))
        return found
    found["function"] = _function(platform, node.type)
    if item.not_before is not None and item.not_before > platform.engine.clock():
        found["wait_until"] = timestamp(item.not_before)
    if node.type is NodeType.HUMAN_IN_THE_LOOP:
        found.update(mode="human", timer_seconds=_human_timer(invocation))
    return found


def _due(when: datetime | None, platform: AwsPlatform) -> datetime:
    return when or platform.engine.clock()


def _function(platform: AwsPlatform, node_type: NodeType) -> str:
    function = platform.settings.node_functions.get(node_type.value)
    if function is None:
        raise ConfigError(
            f"No function runs {node_type.value} nodes (LOOM_NODE_FUNCTIONS).",
            solution="Deploy the engine stack again; it sets LOOM_NODE_FUNCTIONS.",
        )
    return function


def _human_timer(invocation: Invocation) -> int:
    """Seconds the state machine waits for a person: the node's own timeout, evaluated
    like its other parameters, plus a margin. Parameters that do not evaluate fail the
    node when it runs; until then the longest timeout applies."""
    # Only human waits need these: imported above, they would load for every workflow
    # (jsonschema with the node module, jsonata to evaluate), people in it or not.
    from loom.engine.invoke import prepare_parameters
    from loom.nodes.human import MAX_TIMEOUT_SECONDS, ApprovalParameters, InputParameters

    node_id = invocation.item.node_id
    spec, node = invocation.graph.specs[node_id], invocation.graph.nodes[node_id]
    seconds = MAX_TIMEOUT_SECONDS
    try:
        params = prepare_parameters(spec, node, invocation)
    except LoomError:
        return seconds + HIL_TIMER_MARGIN_SECONDS
    if isinstance(params, ApprovalParameters | InputParameters):
        seconds = params.timeout_seconds
    return seconds + HIL_TIMER_MARGIN_SECONDS


def _continue(platform: AwsPlatform, reply: dict[str, Any]) -> dict[str, Any]:
    """Hand the planned round to a new execution, before this one's history runs out."""
    generation = reply["generation"] + 1
    name = f"{reply['run_id']}-{generation}"
    handed = {**reply, "generation": generation, "events": ROUND_EVENTS}
    workspace_id, run_id = UUID(reply["workspace_id"]), UUID(reply["run_id"])
    with platform.db.tenant(workspace_id) as conn:
        executions.drive_on_aws(conn, run_id, name)
    start(platform.settings, name, handed)
    following = execution_arn(platform.settings, name)
    return {**reply, "route": "continued", "items": [], "next_execution": following}
