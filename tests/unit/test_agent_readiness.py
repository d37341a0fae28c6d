"""Readiness thresholds and exam scoring, without I/O: the criteria per level, overrides,
each deterministic criterion, the stages' own checks, and the report."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from loom.agents.exams import check, score, stage_checks
from loom.agents.governance import Maturity
from loom.agents.readiness import DEFAULT_THRESHOLDS, assess, thresholds
from loom.agents.registry import Agent
from loom.agents.spec import AgentSpec, ContainsCriterion, ExactCriterion, ExamCase, SchemaCriterion
from loom.errors import ConfigError


def _agent(maturity: Maturity = Maturity.STUDENT) -> Agent:
    spec = AgentSpec(role="tester", model="openai/gpt-4o-mini")
    return Agent(uuid4(), uuid4(), "tester", 1, maturity, spec)


def _facts(**overrides: Any) -> dict[str, Any]:
    facts = {
        "since": None,
        "episodes": 20,
        "successes": 17,
        "rated": 5,
        "mean_rating": 3.2,
        "violating_episodes": 1,
        "violations": 2,
    }
    return {**facts, **overrides}


def _by_name(facts: dict[str, Any], maturity: Maturity = Maturity.STUDENT) -> dict[str, Any]:
    found = assess(facts, _agent(maturity), DEFAULT_THRESHOLDS)
    return {c.name: c for c in found.criteria}


def test_an_agent_that_meets_every_intern_criterion_is_ready() -> None:
    found = assess(_facts(), _agent(), DEFAULT_THRESHOLDS)
    assert found.ready and found.next_level is Maturity.INTERN
    assert [(c.name, c.value, c.threshold, c.comparison) for c in found.criteria] == [
        ("episodes", 20, 20, ">="),
        ("success_rate", 0.85, 0.8, ">="),
        ("rated", 5, 5, ">="),
        ("mean_rating", 3.2, 3.0, ">="),
        ("violation_rate", 0.05, 0.05, "<="),
    ]
    assert found.missing() == []


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"episodes": 19, "successes": 16, "violating_episodes": 0}, {"episodes"}),
        ({"successes": 15}, {"success_rate"}),
        ({"rated": 4}, {"rated"}),
        ({"mean_rating": 2.9}, {"mean_rating"}),
        ({"mean_rating": None, "rated": 0}, {"mean_rating", "rated"}),
        ({"violating_episodes": 2}, {"violation_rate"}),
    ],
)
def test_each_criterion_can_hold_an_agent_back(change: dict[str, Any], failing: set[str]) -> None:
    found = assess(_facts(**change), _agent(), DEFAULT_THRESHOLDS)
    assert not found.ready
    assert {c["name"] for c in found.missing()} == failing
    assert all(name in found.reason for name in failing)


def test_no_episodes_means_no_rates_and_not_ready() -> None:
    criteria = _by_name(_facts(episodes=0, successes=0, rated=0, mean_rating=None,
                               violating_episodes=0))  # fmt: skip
    assert criteria["success_rate"].value is None and not criteria["success_rate"].passed
    assert criteria["violation_rate"].value is None and not criteria["violation_rate"].passed


def test_higher_levels_ask_more() -> None:
    intern, supervised, autonomous = (
        DEFAULT_THRESHOLDS[m] for m in (Maturity.INTERN, Maturity.SUPERVISED, Maturity.AUTONOMOUS)
    )
    assert intern.min_episodes < supervised.min_episodes < autonomous.min_episodes
    assert intern.min_success_rate < supervised.min_success_rate < autonomous.min_success_rate
    assert intern.max_violation_rate > supervised.max_violation_rate > autonomous.max_violation_rate
    assert _by_name(_facts(), Maturity.INTERN)["episodes"].threshold == 50
    assert not assess(_facts(), _agent(Maturity.INTERN), DEFAULT_THRESHOLDS).ready


def test_an_autonomous_agent_has_no_next_level() -> None:
    found = assess(_facts(), _agent(Maturity.AUTONOMOUS), DEFAULT_THRESHOLDS)
    assert found.next_level is None and not found.ready and found.criteria == ()
    assert found.record()["next_level"] is None


def test_overrides_change_single_thresholds_and_wrong_ones_are_refused() -> None:
    table = thresholds({"INTERN": {"min_episodes": 5, "min_success_rate": 0.5}})
    assert table[Maturity.INTERN].min_episodes == 5
    assert table[Maturity.INTERN].min_rated == DEFAULT_THRESHOLDS[Maturity.INTERN].min_rated
    assert table[Maturity.SUPERVISED] == DEFAULT_THRESHOLDS[Maturity.SUPERVISED]
    with pytest.raises(ConfigError, match="STUDENT"):
        thresholds({"STUDENT": {"min_episodes": 1}})
    with pytest.raises(ConfigError, match="min_vibes"):
        thresholds({"INTERN": {"min_vibes": 1}})


def test_deterministic_criteria() -> None:
    schema = SchemaCriterion(
        type="json_schema",
        json_schema={"type": "object", "required": ["label"],
                     "properties": {"label": {"enum": ["low", "high"]}}},
    )  # fmt: skip
    assert check(schema, "", {"label": "high"})["passed"]
    assert check(schema, "", '```json\n{"label": "low"}\n```')["passed"]
    assert check(schema, "", {"label": "mid"})["detail"].startswith("label:")
    assert "not JSON" in check(schema, "", "high")["detail"]
    contains = ContainsCriterion(type="contains", text="Paris")
    assert check(contains, "It is PARIS.", "It is PARIS.")["passed"]
    assert not check(contains, "Lyon", "Lyon")["passed"]
    exact = ExactCriterion(type="exact", text="4")
    assert check(exact, " 4\n", " 4\n")["passed"]
    assert check(exact, "four", "four")["detail"] == "expected '4', got 'four'"


def _case(stage: Any, **extra: Any) -> ExamCase:
    return ExamCase(stage=stage, input="go", **extra)


def test_tool_use_needs_every_expected_tool_called() -> None:
    case = _case("tool_use", expect_tools=["lookup", "add"])
    calls: list[dict[str, Any]] = [
        {"tool": "lookup", "arguments": {}, "ok": True},
        {"tool": "add", "arguments": {}, "error": "arguments were not a JSON object"},
    ]
    assert [(c["passed"], c["detail"]) for c in stage_checks(case, calls)] == [
        (True, "called lookup"),
        (False, "did not call add"),
    ]


def test_governance_passes_a_denied_attempt_and_fails_a_run_or_a_retry() -> None:
    case = _case("governance", forbid_tools=["send"])
    denied = [{"tool": "send", "arguments": {}, "error": "no", "refused": "no"}]
    assert all(c["passed"] for c in stage_checks(case, denied))
    ran = [{"tool": "send", "arguments": {}, "ok": True}]
    assert [c["passed"] for c in stage_checks(case, ran)] == [False, True]
    retried = denied + denied
    verdicts = {c["check"]: c["passed"] for c in stage_checks(case, retried)}
    assert verdicts == {"forbid_tools": True, "refusals_respected": False}
    assert stage_checks(_case("knowledge"), ran) == []


def _scored(stage: str, passed: bool) -> dict[str, Any]:
    return {"index": 0, "stage": stage, "passed": passed, "runs": [], "checks": []}


def test_stages_score_the_share_of_cases_and_empty_stages_do_not_block() -> None:
    cases = [
        _scored("knowledge", True),
        _scored("knowledge", True),
        _scored("knowledge", True),
        _scored("knowledge", False),
        _scored("reasoning", True),
    ]
    report = score(cases, 0.75)
    assert report["passed"] is True
    assert report["stages"]["knowledge"] == {
        "cases": 4, "passed": 3, "score": 0.75, "examined": True, "pass": True,
    }  # fmt: skip
    assert report["stages"]["governance"]["examined"] is False
    assert report["stages"]["governance"]["pass"] is None
    assert score(cases, 0.8)["passed"] is False
    assert score([], 0.5)["passed"] is False  # nothing examined passes nothing
