"""The planner's rules, without a database: skips, merges, retries, stale reports."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from loom.engine.graph import Graph
from loom.engine.run_state import Finished, NodeState, RunState
from loom.engine.states import NodeStatus, RunStatus
from loom.workflows.definition import RetryPolicy, WorkflowDefinition

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _state(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> RunState:
    trigger = {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"}
    definition = WorkflowDefinition.model_validate(
        {"name": "t", "nodes": [trigger, *nodes], "edges": edges}
    )
    graph = Graph.build(definition)
    return RunState(
        run_id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        workflow_id=uuid.uuid4(),
        version=1,
        graph=graph,
        input={"x": 1},
        status=RunStatus.NEW,
        last_seq=1,
        nodes={n: NodeState(node_id=n, node_run_id=uuid.uuid4()) for n in graph.order},
    )


def _t(node_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "ACTION",
        "subtype": "TRANSFORM",
        "parameters": {"value": 1},
        **extra,
    }


def _done(state: RunState, node_id: str, port: str = "main") -> list[str]:
    state.apply(
        Finished(node_id, state.nodes[node_id].attempt, "completed", output=node_id, port=port), NOW
    )
    return [item.node_id for item in state.plan(NOW)]


def test_first_plan_completes_the_trigger_and_readies_its_successors() -> None:
    state = _state([_t("a"), _t("b")], [{"from": "start", "to": "a"}, {"from": "start", "to": "b"}])
    ready = state.plan(NOW)
    assert sorted(i.node_id for i in ready) == ["a", "b"]
    assert state.nodes["start"].output == {"x": 1}
    assert state.status is RunStatus.RUNNING
    assert [e.type for e in state.events][:2] == ["node_completed", "run_started"]


def test_wait_all_merge_waits_for_every_branch_and_counts_skips_as_resolved() -> None:
    merge = {"id": "m", "type": "FLOW", "subtype": "MERGE", "parameters": {"mode": "wait_all"}}
    cond = {"id": "if", "type": "FLOW", "subtype": "IF", "parameters": {"condition": True}}
    state = _state(
        [cond, _t("yes"), _t("no"), _t("slow"), merge],
        [
            {"from": "start", "to": "if"},
            {"from": "start", "to": "slow"},
            {"from": "if", "to": "yes", "port": "true"},
            {"from": "if", "to": "no", "port": "false"},
            {"from": "yes", "to": "m"},
            {"from": "no", "to": "m"},
            {"from": "slow", "to": "m"},
        ],
    )
    assert sorted(i.node_id for i in state.plan(NOW)) == ["if", "slow"]
    assert _done(state, "if", port="true") == ["yes"]
    assert state.nodes["no"].status is NodeStatus.SKIPPED
    assert _done(state, "yes") == [], "slow is still open"
    assert _done(state, "slow") == ["m"]


def test_first_merge_runs_on_the_first_arrival_only() -> None:
    merge = {"id": "m", "type": "FLOW", "subtype": "MERGE", "parameters": {"mode": "first"}}
    state = _state(
        [_t("a"), _t("b"), merge],
        [
            {"from": "start", "to": "a"},
            {"from": "start", "to": "b"},
            {"from": "a", "to": "m"},
            {"from": "b", "to": "m"},
        ],
    )
    state.plan(NOW)
    assert _done(state, "b") == ["m"]
    assert _done(state, "a") == []
    assert state.inputs_of("m") == {"a": "a", "b": "b"}


def test_all_inactive_inputs_skip_and_the_skip_propagates_to_the_end() -> None:
    cond = {"id": "if", "type": "FLOW", "subtype": "IF", "parameters": {"condition": False}}
    state = _state(
        [cond, _t("a"), _t("b"), _t("c")],
        [
            {"from": "start", "to": "if"},
            {"from": "if", "to": "a", "port": "true"},
            {"from": "a", "to": "b"},
            {"from": "b", "to": "c"},
        ],
    )
    state.plan(NOW)
    assert _done(state, "if", port="false") == []
    assert [state.nodes[n].status for n in "abc"] == [NodeStatus.SKIPPED] * 3
    assert state.status is RunStatus.SUCCESS
    assert state.output == {}, "no leaf completed"


def test_failure_is_retried_after_the_backoff_then_fails_the_run() -> None:
    retry = {"max_attempts": 2, "backoff_seconds": 4, "jitter": False}
    state = _state(
        [_t("a", retry=retry), _t("b")], [{"from": "start", "to": "a"}, {"from": "a", "to": "b"}]
    )
    state.plan(NOW)
    state.apply(Finished("a", 1, "failed", error={"code": "x", "message": "boom"}), NOW)
    [retry_item] = state.plan(NOW)
    assert (retry_item.attempt, retry_item.not_before) == (2, NOW + timedelta(seconds=4))
    state.apply(Finished("a", 2, "failed", error={"code": "x", "message": "boom"}), NOW)
    assert state.status is RunStatus.ERROR
    assert state.error == {"node_id": "a", "code": "x", "message": "boom"}
    assert state.nodes["b"].status is NodeStatus.CANCELLED


def test_non_retryable_errors_skip_the_remaining_attempts() -> None:
    state = _state([_t("a", retry={"max_attempts": 5})], [{"from": "start", "to": "a"}])
    state.plan(NOW)
    state.apply(Finished("a", 1, "failed", error={"code": "bad", "retryable": False}), NOW)
    assert state.status is RunStatus.ERROR


def test_late_and_repeated_reports_change_nothing() -> None:
    state = _state([_t("a")], [{"from": "start", "to": "a"}])
    state.plan(NOW)
    state.apply(Finished("a", 1, "completed", output="first"), NOW)
    state.apply(Finished("a", 1, "completed", output="again"), NOW)
    state.apply(Finished("a", 7, "failed"), NOW)
    assert state.nodes["a"].output == "first"
    assert sum(e.type == "node_completed" for e in state.events) == 2  # trigger + a


def test_recover_resumes_the_same_attempt_and_bounds_restarts() -> None:
    state = _state([_t("a", retry={"max_attempts": 2})], [{"from": "start", "to": "a"}])
    state.plan(NOW)
    assert [i.attempt for i in state.recover(NOW)] == [1]
    assert [i.attempt for i in state.recover(NOW)] == [1]
    assert state.recover(NOW) == [], "a third interruption exceeds two attempts"
    assert state.nodes["a"].error is not None
    assert state.nodes["a"].error["code"] == "interrupted"


def test_full_jitter_stays_within_the_capped_delay() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_seconds=1, backoff_rate=3, max_backoff_seconds=20)
    rng = random.Random(7)
    delays = [policy.delay_after(attempt, rng) for attempt in range(1, 8)]
    assert all(0 <= d <= min(3 ** (a - 1), 20) for a, d in enumerate(delays, start=1))
    assert RetryPolicy(backoff_seconds=2, jitter=False).delay_after(3) == 8
