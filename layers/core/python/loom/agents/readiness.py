"""Readiness: whether an agent version has shown, in its own episodes, enough to sit the
graduation exam for the next maturity level.

The evidence is the live version's finished episodes (exams excluded) since the agent's
maturity last changed, so each level is earned at the level below it. Five criteria, each
with a threshold per target level:

=============  ========  ========  =====  ===========  ==========
to level       episodes  success   rated  mean rating  violations
=============  ========  ========  =====  ===========  ==========
INTERN         >= 20     >= 80 %   >= 5   >= 3.0       <= 5 %
SUPERVISED     >= 50     >= 90 %   >= 10  >= 3.5       <= 2 %
AUTONOMOUS     >= 200    >= 95 %   >= 25  >= 4.0       <= 1 %
=============  ========  ========  =====  ===========  ==========

- success: the share of episodes that ended in ``success``;
- rated / mean rating: people's feedback (-1 wrong .. 5 excellent) on those episodes;
- violations: the share of episodes in which governance denied a tool call - the agent
  reached for something its level does not allow.

``LOOM_AGENT_READINESS`` overrides single thresholds, e.g.
``{"INTERN": {"min_episodes": 5}}`` (field names as in ``Thresholds``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from loom.agents.governance import Maturity
from loom.agents.registry import Agent, load_in
from loom.db import Database
from loom.db import exams as repo
from loom.db.database import Conn
from loom.errors import ConfigError


@dataclass(frozen=True)
class Thresholds:
    """What an agent must show before the exam for one level."""

    min_episodes: int
    min_success_rate: float
    min_rated: int
    min_mean_rating: float
    max_violation_rate: float


DEFAULT_THRESHOLDS: Mapping[Maturity, Thresholds] = {
    Maturity.INTERN: Thresholds(20, 0.80, 5, 3.0, 0.05),
    Maturity.SUPERVISED: Thresholds(50, 0.90, 10, 3.5, 0.02),
    Maturity.AUTONOMOUS: Thresholds(200, 0.95, 25, 4.0, 0.01),
}


def thresholds(
    overrides: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[Maturity, Thresholds]:
    """The default table with ``overrides`` (``LOOM_AGENT_READINESS``) applied; a wrong
    level or field is a ``ConfigError`` naming it."""
    table = dict(DEFAULT_THRESHOLDS)
    names = {f.name: f.type for f in fields(Thresholds)}
    for level_name, row in (overrides or {}).items():
        level = Maturity.__members__.get(str(level_name))
        if level is None or level not in table or not isinstance(row, Mapping):
            raise ConfigError(
                f"LOOM_AGENT_READINESS names {level_name!r}, which is not a level an agent "
                "graduates to.",
                solution="Use INTERN, SUPERVISED or AUTONOMOUS, each with an object of "
                f"thresholds ({', '.join(names)}).",
            )
        changes: dict[str, Any] = {}
        for name, value in row.items():
            if name not in names or not isinstance(value, int | float) or value < 0:
                raise ConfigError(
                    f"LOOM_AGENT_READINESS.{level_name}.{name} is not a threshold.",
                    solution=f"Use non-negative numbers for {', '.join(names)}.",
                )
            changes[name] = int(value) if name in ("min_episodes", "min_rated") else float(value)
        table[level] = replace(table[level], **changes)
    return table


@dataclass(frozen=True)
class Criterion:
    name: str
    value: float | None
    threshold: float
    comparison: str  # ">=" or "<="
    passed: bool
    description: str

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Readiness:
    agent_id: UUID
    version: int
    maturity: Maturity
    next_level: Maturity | None
    ready: bool
    since: datetime | None
    criteria: tuple[Criterion, ...]
    counts: Mapping[str, Any]
    reason: str

    def record(self) -> dict[str, Any]:
        return {
            "agent_id": str(self.agent_id),
            "version": self.version,
            "maturity": self.maturity.name,
            "next_level": self.next_level.name if self.next_level else None,
            "ready": self.ready,
            "since": self.since.isoformat() if self.since else None,
            "criteria": [c.record() for c in self.criteria],
            "counts": dict(self.counts),
            "reason": self.reason,
        }

    def missing(self) -> list[dict[str, Any]]:
        return [c.record() for c in self.criteria if not c.passed]


def assess(
    facts: Mapping[str, Any], agent: Agent, table: Mapping[Maturity, Thresholds]
) -> Readiness:
    """Readiness of ``agent`` for its next level from the counts of its episodes (pure)."""
    nxt = agent.maturity.next()
    counts: dict[str, Any] = {
        "episodes": int(facts["episodes"]),
        "successes": int(facts["successes"]),
        "rated": int(facts["rated"]),
        "mean_rating": _round(facts["mean_rating"]),
        "violating_episodes": int(facts["violating_episodes"]),
        "violations": int(facts["violations"]),
    }
    since = facts.get("since")
    if nxt is None:
        return Readiness(
            agent.id, agent.version, agent.maturity, None, False, since, (), counts,
            "AUTONOMOUS is the highest level; there is nothing to graduate to.",
        )  # fmt: skip
    bar = table[nxt]
    episodes: int = counts["episodes"]
    success = counts["successes"] / episodes if episodes else None
    violation = counts["violating_episodes"] / episodes if episodes else None
    mean: float | None = counts["mean_rating"]
    criteria = (
        _at_least("episodes", episodes, bar.min_episodes, "finished episodes of this version"),
        _at_least("success_rate", success, bar.min_success_rate, "share that ended in success"),
        _at_least("rated", counts["rated"], bar.min_rated, "episodes people rated"),
        _at_least("mean_rating", mean, bar.min_mean_rating, "mean rating, -1 (wrong) to 5"),
        Criterion(
            "violation_rate",
            _round(violation),
            bar.max_violation_rate,
            "<=",
            violation is not None and violation <= bar.max_violation_rate,
            "share of episodes with a tool call governance denied",
        ),
    )
    ready = all(c.passed for c in criteria)
    if ready:
        reason = f"Ready for the {nxt.name} exam."
    else:
        failing = ", ".join(c.name for c in criteria if not c.passed)
        reason = f"Not ready for {nxt.name}: {failing} below the bar."
    return Readiness(
        agent.id, agent.version, agent.maturity, nxt, ready, since, criteria, counts, reason
    )


def readiness_in(conn: Conn, agent: Agent, table: Mapping[Maturity, Thresholds]) -> Readiness:
    return assess(repo.readiness_facts(conn, agent.id, agent.version), agent, table)


def readiness(
    db: Database,
    workspace_id: UUID,
    agent_id: UUID,
    table: Mapping[Maturity, Thresholds] | None = None,
) -> Readiness:
    """The live version's readiness for the agent's next level."""
    with db.tenant(workspace_id) as conn:
        agent = load_in(conn, workspace_id, agent_id)
        return readiness_in(conn, agent, table or DEFAULT_THRESHOLDS)


def _at_least(name: str, value: float | None, threshold: float, description: str) -> Criterion:
    passed = value is not None and value >= threshold
    return Criterion(name, _round(value), threshold, ">=", passed, description)


def _round(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return int(number) if number.is_integer() and not isinstance(value, float) else round(number, 4)
