"""Debugging help: why a run failed, and a fix as a draft diff.

The failing node and its error are facts read from the run, named whatever the model says.
The model gets the pinned definition, the failing node's error and input, and proposes a
whole fixed definition, checked and repaired like any draft; the reply shows the fix as a
structural diff from the version that ran. When no fix validates, or the model fails, the
reply says why in ``fix_error``, with the facts still in it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from loom.builder.answer import explain_schema
from loom.builder.drafting import Drafted, ModelChoice, draft
from loom.builder.errors import RunNotFailed
from loom.builder.grounding import explain_messages
from loom.builder.workspace import Resources, load_resources
from loom.config import BuilderSettings
from loom.db import runs as runs_repo
from loom.db.database import Database
from loom.engine.graph import graph_for
from loom.engine.states import RunStatus
from loom.errors import LoomError, NotFound
from loom.llm.gateway import LlmGateway
from loom.workflows.definition import WorkflowDefinition
from loom.workflows.diff import diff_definitions


@dataclass(frozen=True)
class _Facts:
    run: dict[str, Any]
    definition: WorkflowDefinition
    failed: dict[str, Any] | None
    resources: Resources


async def explain_run(
    db: Database,
    llm: LlmGateway,
    settings: BuilderSettings,
    workspace_id: UUID,
    run_id: UUID,
    choice: ModelChoice,
) -> dict[str, Any]:
    facts = await asyncio.to_thread(_facts, db, workspace_id, run_id)
    run = facts.run
    reply: dict[str, Any] = {
        "run_id": str(run_id),
        "workflow_id": str(run["workflow_id"]),
        "workflow_version": run["workflow_version"],
        "status": run["status"],
        "failed_node": facts.failed,
        "error": run["error"],
        "cause": None,
        "fix": None,
    }
    failure = {"run_error": run["error"], "failed_node": facts.failed, "run_input": run["input"]}
    messages = explain_messages(facts.definition.to_json(), failure, facts.resources)
    drafted: Drafted | None = None
    try:
        async for event in draft(
            llm, workspace_id, choice, messages, facts.resources, settings, schema=explain_schema()
        ):
            if isinstance(event, Drafted):
                drafted = event
    except LoomError as exc:  # no valid fix, or the model failed: the facts still stand
        reply["fix_error"] = exc.to_dict()
        return reply
    assert drafted is not None
    fixed = WorkflowDefinition.model_validate(drafted.definition)
    reply["cause"] = drafted.cause
    reply["fix"] = {
        "definition": drafted.definition,
        "diff": diff_definitions(facts.definition, fixed).to_dict(),
        "explanation": drafted.explanation,
        "questions": drafted.questions,
        "gaps": drafted.gaps,
        "repair_rounds": drafted.repair_rounds,
        "model": drafted.model,
    }
    return reply


def _facts(db: Database, workspace_id: UUID, run_id: UUID) -> _Facts:
    with db.tenant(workspace_id) as conn:
        run = runs_repo.get_run(conn, run_id)
        if run is None:
            raise NotFound(f"Run {run_id} not found.", solution="Check the run id.")
        nodes = runs_repo.node_runs(conn, run_id)
        graph = graph_for(conn, run["workflow_id"], run["workflow_version"], run["body_of"])
        resources = load_resources(conn)
    failed = _failed_node(run, nodes, graph.definition)
    if run["status"] != RunStatus.ERROR.value and failed is None:
        raise RunNotFailed(
            f"Run {run_id} did not fail (it is {run['status']}).",
            solution="Ask for an explanation of a run whose status is ERROR.",
        )
    return _Facts(run, graph.definition, failed, resources)


def _failed_node(
    run: dict[str, Any], nodes: list[dict[str, Any]], definition: WorkflowDefinition
) -> dict[str, Any] | None:
    """The node the run failed at (named by the run's error), else the first that failed."""
    error = run["error"] if isinstance(run["error"], dict) else {}
    failed = [n for n in nodes if n["status"] == "failed"]
    named = next((n for n in failed if n["node_id"] == error.get("node_id")), None)
    found = named or (failed[0] if failed else None)
    if found is None:
        return None
    node = definition.node(found["node_id"])
    return {
        "node_id": found["node_id"],
        "type": node.type.value,
        "subtype": node.subtype,
        "attempt": found["attempt"],
        "error": found["error"],
        "input": found["input"],
    }
