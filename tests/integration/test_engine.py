"""The engine on the real database: joins, skips, retries, errors, timeouts, loops, reruns."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from typing import Any

import pytest

from loom.engine.service import rerun_from
from loom.engine.states import RunStatus
from loom.errors import NotFound
from tests.utils.engine import Harness, example
from tests.utils.test_nodes import CONCURRENCY, EXECUTIONS


def _test_node(node_id: str, **parameters: Any) -> dict[str, Any]:
    settings = ("retry", "timeout_seconds", "on_error")
    extra: dict[str, Any] = {k: parameters.pop(k) for k in settings if k in parameters}
    return {"id": node_id, "type": "ACTION", "subtype": "TEST", "parameters": parameters, **extra}


def _chain(
    name: str, *nodes: dict[str, Any], edges: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    trigger = {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"}
    ids = ["start", *(n["id"] for n in nodes)]
    pairs = [{"from": a, "to": b} for a, b in itertools.pairwise(ids)]
    links = edges if edges is not None else pairs
    return {"name": name, "nodes": [trigger, *nodes], "edges": links}


def test_parallel_branches_join_at_merge(engine_harness: Harness) -> None:
    result = engine_harness.run(example("parallel_merge"), {"n": 4})
    assert result.status is RunStatus.SUCCESS
    assert result.output == {"parts": {"double": 8, "square": 16, "negate": -4}, "sum": 20}
    statuses = {n: row["status"] for n, row in engine_harness.nodes(result.run_id).items()}
    assert set(statuses.values()) == {"completed"}


def test_if_skips_the_branch_not_taken_and_the_skip_propagates(engine_harness: Harness) -> None:
    result = engine_harness.run(example("if_skip"), {"amount": 10})
    assert result.status is RunStatus.SUCCESS
    assert result.output == {"route": "auto-approved", "amount": 10}
    nodes = engine_harness.nodes(result.run_id)
    assert nodes["big"]["output_port"] == "false"
    assert nodes["review"]["status"] == "skipped"
    assert nodes["notify_finance"]["status"] == "skipped", "skips propagate downstream"
    skipped = [
        e["node_id"] for e in engine_harness.events(result.run_id) if e["type"] == "node_skipped"
    ]
    assert skipped == ["review", "notify_finance"]


def test_switch_routes_by_value_and_falls_back_to_default(engine_harness: Harness) -> None:
    chat = engine_harness.run(example("switch"), {"channel": "CHAT"})
    other = engine_harness.run(example("switch"), {"channel": "fax"})
    assert chat.output == {"queue": "chat"}
    assert other.output == {"queue": "triage"}


def test_merge_first_wins_runs_once_with_the_first_arrival(engine_harness: Harness) -> None:
    tag = uuid.uuid4().hex
    definition = _chain(
        "first wins",
        _test_node("fast", tag=tag, value="fast"),
        _test_node("slow", tag=tag, value="slow", sleep=0.5),
        {"id": "join", "type": "FLOW", "subtype": "MERGE", "parameters": {"mode": "first"}},
        _test_node("after", tag=tag),
        edges=[
            {"from": "start", "to": "fast"},
            {"from": "start", "to": "slow"},
            {"from": "fast", "to": "join"},
            {"from": "slow", "to": "join"},
            {"from": "join", "to": "after"},
        ],
    )
    result = engine_harness.run(definition)
    assert result.status is RunStatus.SUCCESS
    nodes = engine_harness.nodes(result.run_id)
    assert nodes["after"]["output"] == "fast"
    assert nodes["slow"]["status"] == "completed", "the late branch still finishes"
    assert EXECUTIONS[(tag, "after")] == 1


def test_retry_then_success_records_each_attempt(engine_harness: Harness) -> None:
    tag = uuid.uuid4().hex
    retry = {"max_attempts": 3, "backoff_seconds": 0.05, "jitter": False}
    result = engine_harness.run(
        _chain("retry", _test_node("flaky", tag=tag, fail_times=2, value=1, retry=retry))
    )
    assert result.status is RunStatus.SUCCESS
    node = engine_harness.nodes(result.run_id)["flaky"]
    assert (node["status"], node["attempt"]) == ("completed", 3)
    assert EXECUTIONS[(tag, "flaky")] == 3
    scheduled = [
        e["data"]
        for e in engine_harness.events(result.run_id)
        if e["type"] == "node_retry_scheduled"
    ]
    assert [s["attempt"] for s in scheduled] == [1, 2]
    assert [s["delay_seconds"] for s in scheduled] == [0.05, 0.1], "exponential backoff"


def test_retries_exhausted_then_routed_to_the_error_port(engine_harness: Harness) -> None:
    tag = uuid.uuid4().hex
    retry = {"max_attempts": 2, "backoff_seconds": 0, "jitter": False}
    definition = _chain(
        "route errors",
        _test_node("fragile", tag=tag, fail_always=True, retry=retry, on_error="route"),
        _test_node("happy", tag=tag),
        _test_node("handler", tag=tag),
        edges=[
            {"from": "start", "to": "fragile"},
            {"from": "fragile", "to": "happy"},
            {"from": "fragile", "to": "handler", "port": "error"},
        ],
    )
    result = engine_harness.run(definition)
    assert result.status is RunStatus.SUCCESS
    nodes = engine_harness.nodes(result.run_id)
    assert nodes["fragile"]["output_port"] == "error"
    assert nodes["fragile"]["attempt"] == 2
    assert nodes["happy"]["status"] == "skipped"
    assert nodes["handler"]["output"]["error"]["code"] == "flaky"


def test_on_error_fail_fails_the_run_with_the_reason_on_the_node(engine_harness: Harness) -> None:
    tag = uuid.uuid4().hex
    result = engine_harness.run(
        _chain("fails", _test_node("boom", tag=tag, fail_always=True), _test_node("never", tag=tag))
    )
    assert result.status is RunStatus.ERROR
    assert result.error["node_id"] == "boom"
    nodes = engine_harness.nodes(result.run_id)
    assert nodes["boom"]["status"] == "failed"
    assert "failed on purpose" in nodes["boom"]["error"]["message"]
    assert nodes["never"]["status"] == "cancelled"
    assert EXECUTIONS[(tag, "never")] == 0


def test_node_timeout_fails_the_attempt(engine_harness: Harness) -> None:
    tag = uuid.uuid4().hex
    slow = _test_node("slow", tag=tag, sleep=5, timeout_seconds=0.2, on_error="continue")
    result = engine_harness.run(_chain("timeout", slow))
    assert result.status is RunStatus.SUCCESS
    node = engine_harness.nodes(result.run_id)["slow"]
    assert node["output"]["error"]["code"] == "timeout"
    assert "0.2 s" in node["output"]["error"]["message"]


def test_cancel_stops_a_waiting_run(engine_harness: Harness) -> None:
    run_id = engine_harness.start(example("wait"), {"seconds": 30})
    h = engine_harness

    async def scenario() -> RunStatus:
        driving = asyncio.create_task(h.runner.drive(h.workspace_id, run_id))
        await asyncio.sleep(0.3)
        cancelled = await h.runner.cancel(h.workspace_id, run_id, "Stopped by test.")
        final = await asyncio.wait_for(driving, 5)
        assert final.status is RunStatus.CANCELLED
        return cancelled.status

    assert asyncio.run(scenario()) is RunStatus.CANCELLED
    nodes = h.nodes(run_id)
    assert nodes["pause"]["status"] == "cancelled"
    assert nodes["after"]["status"] == "cancelled"
    assert h.events(run_id)[-1]["type"] == "run_cancelled"


def test_loop_over_100_items_at_concurrency_10_keeps_order(engine_harness: Harness) -> None:
    tag = uuid.uuid4().hex
    body = {
        "nodes": [
            {"id": "item", "type": "TRIGGER", "subtype": "MANUAL"},
            _test_node("work", tag=tag, sleep=0.01, value="{% $input.item * 10 %}"),
        ],
        "edges": [{"from": "item", "to": "work"}],
    }
    definition = _chain(
        "loop",
        {
            "id": "each",
            "type": "FLOW",
            "subtype": "LOOP",
            "parameters": {"items": "{% $input.items %}", "concurrency": 10, "body": body},
        },
    )
    result = engine_harness.run(definition, {"items": list(range(100))})
    assert result.status is RunStatus.SUCCESS
    assert result.output == [i * 10 for i in range(100)]
    assert EXECUTIONS[(tag, "work")] == 100
    assert 1 < CONCURRENCY[tag][1] <= 10, CONCURRENCY[tag]


def test_rerun_from_a_node_reuses_upstream_outputs(engine_harness: Harness) -> None:
    tag = uuid.uuid4().hex
    definition = _chain(
        "rerun",
        _test_node("a", tag=tag, value="A"),
        _test_node("b", tag=tag, value="{% $nodes.a & 'B' %}"),
        _test_node("c", tag=tag, fail_times=1),
    )
    first = engine_harness.run(definition)
    assert first.status is RunStatus.ERROR
    h = engine_harness
    second_id = rerun_from(h.db, h.workspace_id, first.run_id, "b")
    second = asyncio.run(h.runner.drive(h.workspace_id, second_id))
    assert second.status is RunStatus.SUCCESS
    assert second.output == "AB"
    assert (EXECUTIONS[(tag, "a")], EXECUTIONS[(tag, "b")], EXECUTIONS[(tag, "c")]) == (1, 2, 2)
    nodes = h.nodes(second_id)
    assert nodes["a"]["reused_from"] == h.nodes(first.run_id)["a"]["id"]
    assert nodes["b"]["reused_from"] is None


def test_large_outputs_go_to_the_blob_store(engine_harness: Harness) -> None:
    tag = uuid.uuid4().hex
    big = "x" * 300_000
    result = engine_harness.run(
        _chain(
            "big",
            _test_node("large", tag=tag, value=big),
            _test_node("size", tag=tag, value="{% $length($nodes.large) %}"),
        )
    )
    assert result.status is RunStatus.SUCCESS
    assert result.output == 300_000
    large = engine_harness.nodes(result.run_id)["large"]
    assert large["output"] is None and large["output_ref"].endswith("large-1.json")
    stored = engine_harness.engine.blobs.get(engine_harness.workspace_id, large["output_ref"])
    assert json.loads(stored) == big


def test_events_are_a_gapless_sequence(engine_harness: Harness) -> None:
    result = engine_harness.run(example("parallel_merge"), {"n": 1})
    events = engine_harness.events(result.run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run_created" and events[-1]["type"] == "run_success"


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"value": "{% $number('abc') %}"}, "nodes.shape.parameters"),
        ({"value": "{% ($f := function($x){ $f($x) }; $f(1)) %}"}, "nodes.shape.parameters"),
    ],
)
def test_expression_failures_fail_the_node_with_where(
    engine_harness: Harness, parameters: dict[str, Any], fragment: str
) -> None:
    definition = _chain(
        "bad expr",
        {"id": "shape", "type": "ACTION", "subtype": "TRANSFORM", "parameters": parameters},
    )
    result = engine_harness.run(definition)
    assert result.status is RunStatus.ERROR
    error = engine_harness.nodes(result.run_id)["shape"]["error"]
    assert fragment in error["message"]
    assert error["code"] in {"expression_error", "expression_timeout"}


def test_a_suspended_node_waits_for_its_token_then_carries_on(engine_harness: Harness) -> None:
    tag, token = uuid.uuid4().hex, uuid.uuid4().hex
    definition = _chain(
        "approval", _test_node("ask", tag=tag, suspend_token=token), _test_node("after", tag=tag)
    )
    h = engine_harness
    waiting = h.run(definition)
    assert waiting.status is RunStatus.WAITING_FOR_HUMAN
    node = h.nodes(waiting.run_id)["ask"]
    assert node["status"] == "waiting_input" and node["resume_token"] != token, "stored hashed"
    done = asyncio.run(h.runner.resume(h.workspace_id, token, {"approved": True}))
    assert done.status is RunStatus.SUCCESS
    assert done.output == {"approved": True}
    with pytest.raises(NotFound):
        asyncio.run(h.runner.resume(h.workspace_id, token, {"approved": False}))


def test_an_output_postgres_cannot_store_fails_the_node_not_the_engine(
    engine_harness: Harness,
) -> None:
    tag = uuid.uuid4().hex
    nul = "{% 'a' & $decodeUrlComponent('%00') & 'b' %}"
    result = engine_harness.run(_chain("nul", _test_node("bad", tag=tag, value={"text": nul})))
    assert result.status is RunStatus.ERROR
    error = engine_harness.nodes(result.run_id)["bad"]["error"]
    assert error["code"] == "invalid_result" and "output.text" in error["message"]


def test_a_run_whose_graph_this_process_never_built_loads_under_its_workspace(
    engine_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine process meets most runs first in the database: the run and its node runs
    come in one pipelined read, the version's graph from a transaction of its own, which
    must see the run's workspace as well."""
    from collections import OrderedDict

    from loom.engine import graph
    from loom.workflows import versions

    run_id = engine_harness.start(example("parallel_merge"), {"n": 2})
    monkeypatch.setattr(graph, "_GRAPHS", OrderedDict())
    monkeypatch.setattr(versions, "_CACHE", {})
    engine_harness.engine._states.clear()
    result = asyncio.run(engine_harness.runner.drive(engine_harness.workspace_id, run_id))
    assert result.status is RunStatus.SUCCESS
    assert result.output == {"parts": {"double": 4, "square": 4, "negate": -2}, "sum": 6}
    assert len(graph._GRAPHS) == 1, "the graph read once is kept for the next run"


def test_another_workspaces_run_does_not_load_and_the_engine_carries_on(
    engine_harness: Harness, other_workspace: uuid.UUID
) -> None:
    run_id = engine_harness.start(example("parallel_merge"), {"n": 3})
    engine_harness.engine._states.clear()
    with pytest.raises(NotFound):
        engine_harness.engine.advance(other_workspace, run_id)
    result = asyncio.run(engine_harness.runner.drive(engine_harness.workspace_id, run_id))
    assert result.status is RunStatus.SUCCESS
