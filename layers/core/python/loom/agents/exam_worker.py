"""The periodic job that examines agents which became ready for their next level.

``start_due_exams`` pages through the candidates ``loom_locate_exam_candidates`` finds
across workspaces (live version below AUTONOMOUS, with exam cases, not yet examined at the
agent's current level, with enough episodes to be worth checking), and runs the exam of
each one that is ready, one at a time, as actor ``worker``. A version that failed its exam
is not examined again by the worker at that level: a new version (or an exam started
through the API) is the next chance. ``loom up`` runs it every
``LOOM_AGENT_EXAM_INTERVAL_SECONDS`` (``loom.runtime.local.exams``); on AWS an EventBridge
schedule invokes ``functions/workers/exams.py`` (``exam_job``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from loom.agents.exams import AgentNotReady, ExamOptions, run_exam
from loom.agents.readiness import thresholds
from loom.agents.runtime import AgentRuntime
from loom.config import AgentExamSettings
from loom.db import exams as repo
from loom.errors import ConfigError, LoomError

if TYPE_CHECKING:
    from loom.runtime.aws.platform import AwsPlatform

log = logging.getLogger(__name__)

WORKER = "worker"
PAGE = 100
_FIRST = UUID(int=0)
# The exam Lambda's timeout; the job starts no exam that could outlive it.
LAMBDA_SECONDS = 900.0
LAMBDA_MARGIN_SECONDS = 30.0


def exam_options(
    settings: AgentExamSettings, actor: str, *, require_ready: bool = True
) -> ExamOptions:
    return ExamOptions(
        actor=actor,
        require_ready=require_ready,
        deadline_seconds=settings.agent_exam_deadline_seconds,
        concurrency=settings.agent_exam_concurrency,
        thresholds=thresholds(settings.agent_readiness),
    )


async def start_due_exams(
    runtime: AgentRuntime,
    settings: AgentExamSettings,
    *,
    time_budget_seconds: float | None = None,
) -> list[dict[str, Any]]:
    """Examine every ready candidate; one summary per exam that ran. With a time budget,
    no exam starts that its deadline could carry past the budget."""
    options = exam_options(settings, WORKER)
    least = min(t.min_episodes for t in options.thresholds.values())
    stop_at = None if time_budget_seconds is None else time.monotonic() + time_budget_seconds
    done: list[dict[str, Any]] = []
    after = _FIRST
    while True:
        page = await asyncio.to_thread(_candidates, runtime, least, after)
        for workspace_id, agent_id in page:
            if stop_at is not None and time.monotonic() + options.deadline_seconds > stop_at:
                log.info("exam worker: out of time, %d exam(s) run", len(done))
                return done
            summary = await _examine(runtime, workspace_id, agent_id, options)
            if summary is not None:
                done.append(summary)
        if len(page) < PAGE:
            return done
        after = page[-1][1]


async def _examine(
    runtime: AgentRuntime, workspace_id: UUID, agent_id: UUID, options: ExamOptions
) -> dict[str, Any] | None:
    try:
        exam = await run_exam(runtime, workspace_id, agent_id, options)
    except AgentNotReady:
        return None
    except LoomError as exc:  # changed meanwhile, or another worker got there first
        log.info("exam worker: agent %s not examined: %s", agent_id, exc.message)
        return None
    except Exception:  # one agent's failure must not stop the others' exams
        log.exception("exam worker: the exam of agent %s failed", agent_id)
        return None
    log.info(
        "exam worker: agent %s %s its %s exam",
        agent_id,
        exam["status"],
        exam["to_level"],
    )
    return {
        "workspace_id": str(workspace_id),
        "agent_id": str(agent_id),
        "exam_id": str(exam["id"]),
        "status": exam["status"],
        "to_level": exam["to_level"],
    }


def _candidates(runtime: AgentRuntime, least: int, after: UUID) -> list[tuple[UUID, UUID]]:
    with runtime.db.system() as conn:
        return repo.locate_candidates(conn, least, after, PAGE)


def exam_job(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    """The AWS job (EventBridge Scheduler, every 15 minutes): the exams that fit in one
    invocation; the rest wait for the next."""
    runtime = platform.model_runner.agents
    if runtime is None:
        raise ConfigError(
            "The exam worker has no model gateway.", solution="Deploy it with the llm layer."
        )
    budget = LAMBDA_SECONDS - LAMBDA_MARGIN_SECONDS
    done = platform.run(start_due_exams(runtime, platform.settings, time_budget_seconds=budget))
    return {"exams": len(done), "passed": sum(1 for d in done if d["status"] == "passed")}
