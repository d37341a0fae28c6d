"""Governed agent figures.

Governance overhead: ``Policy.decide`` alone, and ``GovernanceGate.admit`` (the decision,
its record and the emit) for an allowed call, per call over many calls (target < 1 ms).

Recall: 10,000 episodes of one agent with random normalised 384-dimension embeddings in a
fresh embedded Postgres; ``loom.agents.recall.recall`` (the tenant transaction, the HNSW
query, the budget) p50/p95 over 200 random queries (target p95 < 30 ms), and the plan of
the query, which must use the ``episodes_recall`` index.

Exam throughput: an exam of knowledge cases (each one model call and a ``contains``
check, each an ``exam`` episode opened and closed in Postgres) against a scripted
provider on loopback in its own process, in cases per second, one at a time and with the
default concurrency.

Everything stays on 127.0.0.1. Run: ``.venv/bin/python bench/agents.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from loom.agents import recall as recall_mod  # noqa: E402
from loom.agents.exams import ExamOptions, run_exam  # noqa: E402
from loom.agents.gate import GovernanceGate  # noqa: E402
from loom.agents.governance import Maturity, Policy, Risk  # noqa: E402
from loom.agents.registry import create_agent  # noqa: E402
from loom.agents.runtime import AgentRuntime  # noqa: E402
from loom.agents.spec import AgentSpec  # noqa: E402
from loom.config import Settings  # noqa: E402
from loom.db import Database, apply_migrations  # noqa: E402
from loom.db.memory import vector_literal  # noqa: E402
from loom.engine.services import ServicesCache  # noqa: E402
from loom.llm.calls import ToolCall  # noqa: E402
from loom.llm.gateway import LlmGateway  # noqa: E402
from loom.nodes.agent_tools import Tool  # noqa: E402
from tests.utils.fake_llm import fake_llm_process  # noqa: E402
from tests.utils.pg import start_test_cluster  # noqa: E402

GATE_CALLS = 100_000
GATE_TARGET_MS = 1.0
EPISODES = 10_000
DIMENSIONS = 384
QUERIES = 200
RECALL_TARGET_MS = 30.0
EXAM_CASES = 40
MODEL = "openai/gpt-4o-mini"


# -- governance ------------------------------------------------------------------------------


async def _quiet(kind: str, data: dict[str, Any]) -> None:
    return None


async def _noop(args: dict[str, Any]) -> Any:
    return None


def governance_figures() -> bool:
    policy = Policy()
    started = time.perf_counter()
    for _ in range(GATE_CALLS):
        policy.decide("lookup", Risk.READ, Maturity.STUDENT)
    decide_us = (time.perf_counter() - started) / GATE_CALLS * 1e6

    gate = GovernanceGate(
        db=None,  # type: ignore[arg-type]  # an allowed call never touches the database
        workspace_id=uuid.uuid4(),
        episode_id=uuid.uuid4(),
        run_id=None,
        agent_name="bench",
        maturity=Maturity.STUDENT,
        policy=policy,
        approval_timeout_seconds=60,
        deadline=None,
        emit=_quiet,
        base_url="http://127.0.0.1",
    )
    tool = Tool("lookup", "Look it up.", {"type": "object"}, _noop, "read")
    call = ToolCall("call_0", "lookup", {"q": "x"})

    async def admit_all() -> float:
        samples = []
        for block in range(GATE_CALLS // 1000):
            gate.decisions.clear()  # an episode keeps its own; do not grow one list forever
            begun = time.perf_counter()
            for _ in range(1000):
                assert await gate.admit(tool, call) is None
            samples.append((time.perf_counter() - begun) / 1000 * 1e6)
            del block
        return statistics.median(samples)

    admit_us = asyncio.run(admit_all())
    ok = admit_us / 1000 < GATE_TARGET_MS
    print(f"Governance check, {GATE_CALLS:,} allowed calls")
    print(f"  Policy.decide                 {decide_us:7.2f} us/call")
    print(f"  GovernanceGate.admit (+emit)  {admit_us:7.2f} us/call (median of 1,000-call blocks)")
    print(f"  target < {GATE_TARGET_MS:g} ms per call: {'ok' if ok else 'OVER TARGET'}")
    return ok


# -- recall ----------------------------------------------------------------------------------


def _vectors(rng: np.random.Generator, count: int) -> np.ndarray[Any, Any]:
    raw = rng.standard_normal((count, DIMENSIONS)).astype(np.float32)
    normalised: np.ndarray[Any, Any] = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    return normalised


def _seed_episodes(db: Database, workspace: uuid.UUID, agent: uuid.UUID) -> float:
    """EPISODES finished episodes with embeddings, 500 to a statement (COPY is refused
    under row-level security); seconds taken (the HNSW index is maintained as rows
    arrive)."""
    rng = np.random.default_rng(7)
    vectors = _vectors(rng, EPISODES)
    literals = ["[" + ",".join(f"{x:.6f}" for x in vector) + "]" for vector in vectors]
    summaries = [f"Episode {i} about topic {i % 97}" for i in range(EPISODES)]
    started = time.perf_counter()
    for first in range(0, EPISODES, 500):
        with db.tenant(workspace) as conn:
            conn.execute(
                """
                INSERT INTO episodes (workspace_id, agent_id, agent_version, outcome, kind,
                                      summary, embedding, finished_at)
                SELECT %s, %s, 1, 'success', 'chat', s, e::vector, now()
                FROM unnest(%s::text[], %s::text[]) AS t(s, e)
                """,
                (workspace, agent, summaries[first : first + 500], literals[first : first + 500]),
            )
    with db.tenant(workspace) as conn:
        conn.execute("ANALYZE episodes")
    return time.perf_counter() - started


def _plan(db: Database, workspace: uuid.UUID, agent: uuid.UUID, vector: list[float]) -> str:
    with db.tenant(workspace) as conn:
        rows = conn.execute(
            """
            EXPLAIN SELECT id, summary, feedback_rating, feedback_correction, outcome,
                   created_at, embedding <=> %s::vector AS distance
            FROM episodes WHERE agent_id = %s AND embedding IS NOT NULL
            ORDER BY embedding <=> %s::vector LIMIT %s
            """,
            (vector_literal(vector), agent, vector_literal(vector), 9),
        ).fetchall()
    return "\n".join(str(next(iter(r.values()))) for r in rows)


async def _recall_times(
    db: Database, workspace: uuid.UUID, agent: uuid.UUID
) -> tuple[list[float], int]:
    """Queries near stored episodes (a stored vector plus noise), as a similar input
    would be."""
    rng = np.random.default_rng(7)
    stored = _vectors(rng, EPISODES)
    near = stored[rng.integers(0, EPISODES, QUERIES + 10)] + _vectors(rng, QUERIES + 10) * 0.5
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    queries = [[float(x) for x in v] for v in near]
    times: list[float] = []
    found = 0
    for index, query in enumerate(queries):
        started = time.perf_counter()
        recalled = await recall_mod.recall(db, workspace, agent, query, limit=3, token_budget=600)
        if index >= 10:  # the first few warm the pool and the index pages
            times.append((time.perf_counter() - started) * 1000)
            found += len(recalled)
    return times, found


def _workspace(db: Database) -> uuid.UUID:
    workspace = uuid.uuid4()
    with db.tenant(workspace) as conn:
        conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'bench')", (workspace,))
    return workspace


def _agent(db: Database, workspace: uuid.UUID, spec: dict[str, Any]) -> uuid.UUID:
    row = create_agent(
        db,
        workspace,
        name=f"bench-{uuid.uuid4().hex[:8]}",
        description="",
        spec=AgentSpec.model_validate(spec),
        created_by=None,
    )
    agent_id: uuid.UUID = row["id"]
    return agent_id


def recall_figures(db: Database) -> bool:
    workspace = _workspace(db)
    agent = _agent(db, workspace, {"role": "bench", "model": MODEL})
    seconds = _seed_episodes(db, workspace, agent)
    print(f"\nRecall over {EPISODES:,} episodes of one agent ({DIMENSIONS} dimensions)")
    print(f"  stored 500 rows a statement, HNSW maintained on insert: {seconds:.1f} s")
    times, found = asyncio.run(_recall_times(db, workspace, agent))
    p50 = statistics.median(times)
    p95 = statistics.quantiles(times, n=20)[18]
    plan = _plan(db, workspace, agent, [1.0 / DIMENSIONS**0.5] * DIMENSIONS)
    uses_index = "episodes_recall" in plan
    ok = p95 < RECALL_TARGET_MS and uses_index
    print(f"  recall() over {QUERIES} queries: p50 {p50:.2f} ms, p95 {p95:.2f} ms, ", end="")
    print(f"max {max(times):.2f} ms (target p95 < {RECALL_TARGET_MS:g} ms)")
    print(f"  episodes recalled: {found} in {QUERIES} queries (at most 3 each)")
    print("  plan:")
    for line in plan.splitlines():
        print("    " + re.sub(r"'\[[^']*\]'", "'[384 values]'", line))
    print(f"  uses the episodes_recall HNSW index: {'yes' if uses_index else 'NO'}; ", end="")
    print("ok" if ok else "OVER TARGET")
    return ok


# -- exams -----------------------------------------------------------------------------------


def exam_figures(db: Database, api_base: str) -> bool:
    settings = Settings.model_validate(
        {
            "llm_api_keys": {"openai": "sk-bench"},
            "llm_api_bases": {"openai": api_base},
            "llm_workspace_calls_per_minute": 10_000_000,
            "llm_provider_calls_per_minute": 10_000_000,
        }
    )
    runtime = AgentRuntime(
        db, LlmGateway(db, settings=settings), ServicesCache(db, None), "http://127.0.0.1"
    )
    workspace = _workspace(db)
    cases = [
        {
            "stage": "knowledge",
            "input": f"How urgent is ticket {i}?",
            "criteria": [{"type": "contains", "text": "urgent"}],
        }
        for i in range(EXAM_CASES)
    ]
    spec = {
        "role": "bench",
        "model": MODEL,
        "memory": {"recall": {"enabled": False}},
        "exam": {"cases": cases},
    }
    print(f"\nExam throughput: {EXAM_CASES} cases, scripted provider on loopback (own process)")
    warm_up = {**spec, "exam": {"cases": cases[:4]}}  # litellm's first call costs seconds
    options = ExamOptions(actor="bench", require_ready=False, deadline_seconds=300)
    asyncio.run(run_exam(runtime, workspace, _agent(db, workspace, warm_up), options))
    ok = True
    for concurrency in (1, 4):
        agent = _agent(db, workspace, spec)
        options = ExamOptions(
            actor="bench", require_ready=False, deadline_seconds=300, concurrency=concurrency
        )
        started = time.perf_counter()
        exam = asyncio.run(run_exam(runtime, workspace, agent, options))
        seconds = time.perf_counter() - started
        ok = ok and exam["status"] == "passed"
        print(f"  concurrency {concurrency}: {EXAM_CASES / seconds:6.1f} cases/s ", end="")
        print(f"({seconds * 1000 / EXAM_CASES:.1f} ms/case wall), exam {exam['status']}")
    return ok


def main() -> int:
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}\n")
    ok = governance_figures()
    with (
        tempfile.TemporaryDirectory() as tmp,
        fake_llm_process("It is urgent.", tokens_in=30, tokens_out=4) as api_base,
    ):
        cluster = start_test_cluster(Path(tmp) / "pg")
        apply_migrations(cluster.urls.owner)
        with Database(cluster.urls, min_size=2, max_size=8) as db:
            ok = recall_figures(db) and ok
            ok = exam_figures(db, api_base) and ok
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
