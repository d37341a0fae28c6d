"""Maturity levels, risk classes and the policy that maps one to the other.

Every tool an agent may call has a risk class; before each call the agent's maturity level
and the tool's class look up a verdict in the policy: allow, ask a person (a tool approval
through human-in-the-loop) or deny. The default table below may be overridden per
workspace (``agent_policy`` in the workspace settings); a lookup is two dict reads, so the
check costs microseconds on every call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from loom.errors import ValidationFailed


class Maturity(IntEnum):
    """How much autonomy an agent has earned; exams promote one level at a time."""

    STUDENT = 0
    INTERN = 1
    SUPERVISED = 2
    AUTONOMOUS = 3

    def next(self) -> Maturity | None:
        return Maturity(self + 1) if self < Maturity.AUTONOMOUS else None


class Risk(StrEnum):
    READ = "read"  # looks, changes nothing
    WRITE = "write"  # changes Loom's own state (memory, a workflow run)
    EXTERNAL = "external"  # a side effect outside Loom: a POST, a message, a mail
    SPEND = "spend"  # costs money: another agent's model calls

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Risk.READ: 0, Risk.WRITE: 1, Risk.EXTERNAL: 2, Risk.SPEND: 3}


class Verdict(StrEnum):
    ALLOW = "allow"
    APPROVE = "approve"  # allowed once a person says yes
    DENY = "deny"


DEFAULT_POLICY: Mapping[Maturity, Mapping[Risk, Verdict]] = {
    Maturity.STUDENT: {
        Risk.READ: Verdict.ALLOW,
        Risk.WRITE: Verdict.DENY,
        Risk.EXTERNAL: Verdict.DENY,
        Risk.SPEND: Verdict.DENY,
    },
    Maturity.INTERN: {
        Risk.READ: Verdict.ALLOW,
        Risk.WRITE: Verdict.APPROVE,
        Risk.EXTERNAL: Verdict.APPROVE,
        Risk.SPEND: Verdict.DENY,
    },
    Maturity.SUPERVISED: {
        Risk.READ: Verdict.ALLOW,
        Risk.WRITE: Verdict.ALLOW,
        Risk.EXTERNAL: Verdict.APPROVE,
        Risk.SPEND: Verdict.APPROVE,
    },
    Maturity.AUTONOMOUS: {
        Risk.READ: Verdict.ALLOW,
        Risk.WRITE: Verdict.ALLOW,
        Risk.EXTERNAL: Verdict.ALLOW,
        Risk.SPEND: Verdict.ALLOW,
    },
}


@dataclass(frozen=True)
class Decision:
    """One verdict on one tool call, with the reason told to the model and the user."""

    tool: str
    risk: Risk
    maturity: Maturity
    verdict: Verdict
    reason: str

    def record(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "risk": self.risk.value,
            "maturity": self.maturity.name,
            "verdict": self.verdict.value,
            "reason": self.reason,
        }


class Policy:
    """The verdict table of one workspace: the default, with its overrides."""

    def __init__(self, overrides: Mapping[str, Mapping[str, str]] | None = None) -> None:
        table = {level: dict(row) for level, row in DEFAULT_POLICY.items()}
        for level, row in parse_overrides(overrides or {}).items():
            table[level].update(row)
        self._table = table

    def decide(self, tool: str, risk: Risk, maturity: Maturity) -> Decision:
        verdict = self._table[maturity][risk]
        return Decision(tool, risk, maturity, verdict, _reason(tool, risk, maturity, verdict))

    def table(self) -> dict[str, dict[str, str]]:
        return {
            level.name: {risk.value: verdict.value for risk, verdict in row.items()}
            for level, row in self._table.items()
        }


def parse_overrides(raw: Mapping[str, Any]) -> dict[Maturity, dict[Risk, Verdict]]:
    """``{"INTERN": {"write": "allow"}}`` checked, every problem named at once."""
    problems: list[dict[str, str]] = []
    parsed: dict[Maturity, dict[Risk, Verdict]] = {}
    for level_name, row in raw.items():
        level = Maturity.__members__.get(str(level_name))
        if level is None or not isinstance(row, Mapping):
            problems.append(
                {
                    "path": f"agent_policy.{level_name}",
                    "message": f"expected one of {', '.join(Maturity.__members__)} with an "
                    "object of risk class to verdict",
                }
            )
            continue
        for risk_name, verdict_name in row.items():
            try:
                parsed.setdefault(level, {})[Risk(risk_name)] = Verdict(verdict_name)
            except ValueError:
                problems.append(
                    {
                        "path": f"agent_policy.{level_name}.{risk_name}",
                        "message": f"risk classes are {', '.join(r.value for r in Risk)}; "
                        f"verdicts are {', '.join(v.value for v in Verdict)}",
                    }
                )
    if problems:
        raise ValidationFailed(
            f"The agent policy has {len(problems)} problem(s).",
            solution="Fix every entry listed in details.",
            details=problems,
        )
    return parsed


def _reason(tool: str, risk: Risk, maturity: Maturity, verdict: Verdict) -> str:
    if verdict is Verdict.ALLOW:
        return f"{maturity.name} agents may use {risk.value} tools."
    if verdict is Verdict.APPROVE:
        return (
            f"{maturity.name} agents need a person's approval for {risk.value} tools like {tool}."
        )
    return (
        f"{maturity.name} agents may not use {risk.value} tools like {tool}; the agent must "
        "pass a graduation exam for more autonomy."
    )
