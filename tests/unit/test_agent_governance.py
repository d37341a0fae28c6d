"""The governance policy and the risk classes of an agent's tools."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from loom.agents.governance import Maturity, Policy, Risk, Verdict
from loom.agents.spec import AgentSpec, effective_risk
from loom.errors import ValidationFailed


def _verdicts(policy: Policy, level: Maturity) -> list[str]:
    return [policy.decide("t", risk, level).verdict.value for risk in Risk]


def test_the_default_policy_grows_with_maturity() -> None:
    policy = Policy()
    assert _verdicts(policy, Maturity.STUDENT) == ["allow", "deny", "deny", "deny"]
    assert _verdicts(policy, Maturity.INTERN) == ["allow", "approve", "approve", "deny"]
    assert _verdicts(policy, Maturity.SUPERVISED) == ["allow", "allow", "approve", "approve"]
    assert _verdicts(policy, Maturity.AUTONOMOUS) == ["allow"] * 4


def test_a_denial_says_why_and_what_would_change_it() -> None:
    decision = Policy().decide("post_invoice", Risk.EXTERNAL, Maturity.STUDENT)
    assert decision.verdict is Verdict.DENY
    assert "STUDENT agents may not use external tools like post_invoice" in decision.reason
    assert "graduation exam" in decision.reason
    assert decision.record()["maturity"] == "STUDENT"


def test_overrides_change_only_their_cells() -> None:
    policy = Policy({"INTERN": {"write": "allow"}, "AUTONOMOUS": {"spend": "approve"}})
    assert _verdicts(policy, Maturity.INTERN) == ["allow", "allow", "approve", "deny"]
    assert _verdicts(policy, Maturity.AUTONOMOUS) == ["allow", "allow", "allow", "approve"]
    assert policy.table()["STUDENT"] == Policy().table()["STUDENT"]


def test_bad_overrides_are_all_named() -> None:
    with pytest.raises(ValidationFailed) as caught:
        Policy({"GURU": {"read": "allow"}, "INTERN": {"delete": "allow", "write": "sure"}})
    paths = sorted(d["path"] for d in caught.value.details or [])
    assert paths == ["agent_policy.GURU", "agent_policy.INTERN.delete", "agent_policy.INTERN.write"]


def test_maturity_promotes_one_level_and_stops_at_the_top() -> None:
    assert Maturity.STUDENT.next() is Maturity.INTERN
    assert Maturity.AUTONOMOUS.next() is None


def _tool(**fields: Any) -> Any:
    spec = AgentSpec.model_validate({"role": "r", "model": "openai/gpt-4o-mini", "tools": [fields]})
    return spec.tools[0]


@pytest.mark.parametrize(
    ("method", "risk"),
    [
        ("GET", Risk.READ),
        ("head", Risk.READ),
        ("POST", Risk.EXTERNAL),
        ("DELETE", Risk.EXTERNAL),
        ("{% $args.m %}", Risk.EXTERNAL),
    ],
)
def test_http_tools_read_only_with_a_literal_read_method(method: str, risk: Risk) -> None:
    tool = _tool(
        type="HTTP_REQUEST",
        name="h",
        description="d",
        request={"method": method, "url": "https://example.com"},
    )
    assert effective_risk(tool) is risk


def test_each_kind_of_tool_has_its_class() -> None:
    code = _tool(type="CODE", name="c", description="d", code="def main(inputs): return 1")
    flow = _tool(type="WORKFLOW", name="w", description="d", workflow_id=str(uuid4()))
    ask = _tool(type="AGENT", name="a", description="d", agent_id=str(uuid4()))
    memory = _tool(type="VECTOR_MEMORY", collection="faq")
    assert effective_risk(code) is Risk.READ
    assert effective_risk(flow) is Risk.EXTERNAL
    assert effective_risk(ask) is Risk.SPEND
    assert (effective_risk(memory), effective_risk(memory, writes=True)) == (Risk.READ, Risk.WRITE)
    raised = _tool(type="CODE", name="c", description="d", code="x", risk="external")
    assert effective_risk(raised) is Risk.EXTERNAL


def test_a_risk_may_be_raised_never_lowered() -> None:
    with pytest.raises(ValidationError, match="raised, not lowered to read"):
        _tool(
            type="HTTP_REQUEST",
            name="h",
            description="d",
            request={"method": "POST", "url": "https://example.com"},
            risk="read",
        )


def test_tool_names_must_be_unique_across_kinds() -> None:
    with pytest.raises(ValidationError, match="tool names must be unique: search_faq"):
        AgentSpec.model_validate(
            {
                "role": "r",
                "model": "openai/gpt-4o-mini",
                "tools": [
                    {"type": "VECTOR_MEMORY", "collection": "faq"},
                    {"type": "CODE", "name": "search_faq", "description": "d", "code": "x"},
                ],
            }
        )
