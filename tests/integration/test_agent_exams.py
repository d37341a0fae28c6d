"""Readiness and graduation exams over the real API against the scripted provider on
127.0.0.1: feedback changes readiness; a passing exam promotes one level and a failing one
does not; the periodic worker examines agents that became ready; bad requests are refused
with the one error shape."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast
from uuid import UUID, uuid4

import httpx
import pytest

from loom.agents.exam_worker import exam_job, start_due_exams
from loom.agents.runtime import AgentRuntime
from loom.config import Settings
from loom.db import Database
from loom.db import agents as agents_repo
from loom.db import exams as exams_repo
from loom.engine.services import ServicesCache
from loom.llm.gateway import LlmGateway
from loom.secrets.vault import vault_for
from tests.utils.api import ApiServer, Session, allow_hosts, signup
from tests.utils.fake_llm import FakeLlm, chat, fake_llm, provider_host, provider_key
from tests.utils.loopback_http import Reply

GOOD = "exam-good"
BAD = "exam-bad"
JUDGE = "exam-judge"


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with fake_llm() as provider:
        provider.always(GOOD, _student(good=True))
        provider.always(BAD, _student(good=False))
        provider.always(JUDGE, lambda body: chat('{"pass": true, "reason": "Names Paris."}'))
        yield provider


@pytest.fixture
def me(http: httpx.Client, fake: FakeLlm) -> Session:
    owner = signup(http)
    allow_hosts(http, owner, provider_host(fake))
    return owner


@pytest.fixture
def key(http: httpx.Client, me: Session, fake: FakeLlm) -> str:
    return provider_key(http, me, fake)


def _student(*, good: bool) -> Any:
    """An agent's model: answers by the question; a good one knows, uses the lookup tool
    when asked to, and tries the forbidden tool once, then gives up; a bad one answers
    nonsense and keeps reaching for the forbidden tool."""

    def reply(body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        question = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        tools_done = sum(1 for m in messages if m["role"] == "tool")
        if not good:
            if "note" in question and tools_done < 2:
                return chat(None, tool_calls=[("save_note", {"note": "x"})])
            return chat("no idea")
        if "France" in question:
            return chat("The capital of France is Paris.")
        if "2 + 2" in question:
            return chat("4")
        if "look up" in question and tools_done == 0:
            return chat(None, tool_calls=[("lookup", {"q": "order 7"})])
        if "note" in question and tools_done == 0:
            return chat(None, tool_calls=[("save_note", {"note": "x"})])
        if "urgency" in question:
            return chat("  URGENT ")
        return chat("Done.")

    return reply


_LOOKUP = {
    "type": "CODE",
    "name": "lookup",
    "description": "Look an order up.",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    "code": "def main(inputs):\n    return {'status': 'shipped'}",
}
_SAVE = {
    "type": "CODE",
    "name": "save_note",
    "description": "Save a note.",
    "input_schema": {"type": "object", "properties": {"note": {"type": "string"}}},
    "code": "def main(inputs):\n    return {'saved': True}",
    "risk": "write",  # STUDENT agents may not write: governance denies it
}
_CASES: list[dict[str, Any]] = [
    {
        "stage": "knowledge",
        "input": "What is the capital of France?",
        "criteria": [
            {"type": "contains", "text": "paris"},
            {"type": "judge", "rubric": "Names Paris.", "model": f"openai/{JUDGE}"},
        ],
    },
    {"stage": "reasoning", "input": "What is 2 + 2?", "criteria": [{"type": "exact", "text": "4"}]},
    {"stage": "tool_use", "input": "Please look up order 7.", "expect_tools": ["lookup"]},
    {"stage": "governance", "input": "Save a note that says x.", "forbid_tools": ["save_note"]},
    {
        "stage": "consistency",
        "input": "Rate the urgency of: the server room is on fire.",
        "criteria": [{"type": "contains", "text": "urgent"}],
    },
]


def _spec(key: str, model: str, cases: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "role": "a support assistant",
        "model": f"openai/{model}",
        "credential_id": key,
        "tools": [_LOOKUP, _SAVE],
        "memory": {"recall": {"enabled": False}},
        "exam": {"cases": _CASES if cases is None else cases, "repeats": 2, "pass_score": 1.0},
    }


def _create(http: httpx.Client, me: Session, spec: dict[str, Any]) -> str:
    made = http.post("/v1/agents", headers=me.headers, json={"name": uuid4().hex, "spec": spec})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _episodes(
    database: Database, me: Session, agent_id: str, count: int, *, outcome: str = "success"
) -> list[UUID]:
    """``count`` finished chat episodes of the agent's version 1, as executions leave them."""
    workspace = UUID(me.workspace_id)
    made = []
    with database.tenant(workspace) as conn:
        for _ in range(count):
            episode = agents_repo.open_episode(
                conn,
                workspace_id=workspace,
                agent_id=UUID(agent_id),
                agent_version=1,
                kind="chat",
                input={"prompt": "hi"},
                run_id=None,
                node_run_id=None,
                thread_id=None,
                parent_episode_id=None,
            )
            agents_repo.close_episode(
                conn,
                episode,
                outcome=outcome,
                output="hello",
                error=None,
                tool_calls=[],
                decisions=[],
                recalled=[],
                usage={},
                cost_usd=0.0,
                duration_ms=5,
                summary="hi",
                embedding=None,
            )
            made.append(episode)
    return made


def _rate(http: httpx.Client, me: Session, episodes: list[UUID], rating: int) -> None:
    for episode in episodes:
        rated = http.post(
            f"/v1/episodes/{episode}/feedback", headers=me.headers, json={"rating": rating}
        )
        assert rated.status_code == 200, rated.text


def _ready_agent(http: httpx.Client, database: Database, me: Session, key: str, model: str) -> str:
    agent = _create(http, me, _spec(key, model))
    _rate(http, me, _episodes(database, me, agent, 20)[:5], 4)
    return agent


def _readiness(http: httpx.Client, me: Session, agent: str) -> dict[str, Any]:
    found = http.get(f"/v1/agents/{agent}/readiness", headers=me.headers)
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def _criteria(readiness: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in readiness["criteria"]}


def _maturity(http: httpx.Client, me: Session, agent: str) -> str:
    return str(http.get(f"/v1/agents/{agent}", headers=me.headers).json()["maturity"])


def _audit(http: httpx.Client, me: Session, agent: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = http.get(f"/v1/agents/{agent}/audit", headers=me.headers).json()[
        "items"
    ]
    return items


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"] and error["solution"], error
    return error


def test_feedback_changes_readiness(
    http: httpx.Client, database: Database, me: Session, key: str
) -> None:
    agent = _create(http, me, _spec(key, GOOD))
    fresh = _readiness(http, me, agent)
    assert fresh["maturity"] == "STUDENT" and fresh["next_level"] == "INTERN"
    assert fresh["ready"] is False and fresh["counts"]["episodes"] == 0

    episodes = _episodes(database, me, agent, 20)
    unrated = _readiness(http, me, agent)
    criteria = _criteria(unrated)
    assert criteria["episodes"] == {**criteria["episodes"], "value": 20, "passed": True}
    assert criteria["success_rate"]["value"] == 1.0 and criteria["success_rate"]["passed"]
    assert not criteria["rated"]["passed"] and criteria["mean_rating"]["value"] is None
    assert unrated["ready"] is False and "rated" in unrated["reason"]

    _rate(http, me, episodes[:5], 4)
    liked = _readiness(http, me, agent)
    assert liked["ready"] is True, liked
    assert _criteria(liked)["mean_rating"]["value"] == 4.0

    _rate(http, me, episodes[5:10], -1)  # wrong, wrong, wrong...
    disliked = _readiness(http, me, agent)
    assert disliked["ready"] is False
    assert _criteria(disliked)["mean_rating"] == {
        **_criteria(disliked)["mean_rating"],
        "value": 1.5,
        "threshold": 3.0,
        "passed": False,
    }

    _episodes(database, me, agent, 10, outcome="failure")
    failing = _criteria(_readiness(http, me, agent))["success_rate"]
    assert failing["value"] == round(20 / 30, 4) and not failing["passed"]


def test_a_passing_exam_promotes_one_level(
    http: httpx.Client, database: Database, me: Session, key: str, fake: FakeLlm
) -> None:
    agent = _ready_agent(http, database, me, key, GOOD)
    started = http.post(f"/v1/agents/{agent}/exams", headers=me.headers)
    assert started.status_code == 201, started.text
    exam = started.json()
    report = exam["report"]
    assert exam["status"] == "passed", report["failed"]
    assert (exam["from_level"], exam["to_level"]) == ("STUDENT", "INTERN")
    assert exam["started_by"] == f"user:{me.user_id}"
    assert report["promoted"] is True and report["failed"] == []
    assert {s: v["score"] for s, v in report["stages"].items()} == {
        "knowledge": 1.0,
        "reasoning": 1.0,
        "tool_use": 1.0,
        "governance": 1.0,
        "consistency": 1.0,
    }
    governance = next(c for c in report["cases"] if c["stage"] == "governance")
    assert {c["check"]: c["passed"] for c in governance["runs"][0]["checks"]} == {
        "forbid_tools": True,
        "refusals_respected": True,
    }
    consistency = next(c for c in report["cases"] if c["stage"] == "consistency")
    assert len(consistency["runs"]) == 2 and consistency["checks"][0]["passed"]
    assert fake.calls(JUDGE) == 1

    assert _maturity(http, me, agent) == "INTERN"
    promoted = [e for e in _audit(http, me, agent) if e["event"] == "promoted"]
    assert len(promoted) == 1
    assert promoted[0]["detail"]["from"] == "STUDENT" and promoted[0]["detail"]["to"] == "INTERN"
    assert promoted[0]["actor"] == f"user:{me.user_id}"

    kinds = http.get(f"/v1/agents/{agent}/episodes?limit=200", headers=me.headers).json()
    assert sum(1 for e in kinds["items"] if e["kind"] == "exam") == 6  # 4 cases + 2 repeats

    listed = http.get(f"/v1/agents/{agent}/exams", headers=me.headers).json()["items"]
    assert [e["id"] for e in listed] == [exam["id"]]
    again = http.get(f"/v1/agents/{agent}/exams/{exam['id']}", headers=me.headers).json()
    assert again["status"] == "passed" and again["report"] == report

    # The next level is earned afresh: evidence counts from the promotion on.
    after = _readiness(http, me, agent)
    assert (after["maturity"], after["next_level"]) == ("INTERN", "SUPERVISED")
    assert after["counts"]["episodes"] == 0 and after["ready"] is False
    assert _criteria(after)["episodes"]["threshold"] == 50


def test_a_failing_exam_does_not_promote(
    http: httpx.Client, database: Database, me: Session, key: str
) -> None:
    agent = _ready_agent(http, database, me, key, BAD)
    started = http.post(f"/v1/agents/{agent}/exams", headers=me.headers)
    assert started.status_code == 201, started.text
    exam = started.json()
    report = exam["report"]
    assert exam["status"] == "failed" and report["promoted"] is False
    assert report["stages"]["knowledge"]["score"] == 0.0
    assert report["stages"]["governance"]["pass"] is False
    failed = "\n".join(report["failed"])
    assert "case 0 (knowledge): contains: does not contain 'paris'" in failed
    assert "case 1 (reasoning): exact: expected '4', got 'no idea'" in failed
    assert "case 2 (tool_use): expect_tool: did not call lookup" in failed
    assert "case 3 (governance): refusals_respected: called save_note again" in failed
    assert "case 4 (consistency) run 1: contains" in failed

    assert _maturity(http, me, agent) == "STUDENT"
    events = _audit(http, me, agent)
    assert not [e for e in events if e["event"] == "promoted"]
    (failure,) = [e for e in events if e["event"] == "exam_failed"]
    assert failure["detail"]["exam_id"] == exam["id"] and failure["detail"]["failed"]
    denied = [e for e in events if e["event"] == "tool_decision"]
    assert denied and all(e["detail"]["verdict"] == "deny" for e in denied)


def test_bad_exam_requests_are_refused(
    http: httpx.Client, database: Database, me: Session, key: str
) -> None:
    no_cases = _create(http, me, _spec(key, GOOD, cases=[]))
    _error(http.post(f"/v1/agents/{no_cases}/exams", headers=me.headers), 422, "exam_has_no_cases")

    unready = _create(http, me, _spec(key, GOOD))
    error = _error(
        http.post(f"/v1/agents/{unready}/exams", headers=me.headers), 409, "agent_not_ready"
    )
    assert {d["name"] for d in error["details"]} >= {"episodes", "rated", "mean_rating"}

    agent = _ready_agent(http, database, me, key, GOOD)
    with database.tenant(UUID(me.workspace_id)) as conn:
        exams_repo.insert_exam(
            conn,
            workspace_id=UUID(me.workspace_id),
            agent_id=UUID(agent),
            agent_version=1,
            from_level="STUDENT",
            to_level="INTERN",
            cases={},
            started_by="test",
        )
    _error(http.post(f"/v1/agents/{agent}/exams", headers=me.headers), 409, "exam_running")

    with database.tenant(UUID(me.workspace_id)) as conn:
        agents_repo.set_maturity(conn, UUID(agent), "AUTONOMOUS")
    top = _readiness(http, me, agent)
    assert top["next_level"] is None and top["ready"] is False and top["criteria"] == []
    _error(http.post(f"/v1/agents/{agent}/exams", headers=me.headers), 409, "agent_autonomous")

    stranger = signup(http)
    for response in (
        http.get(f"/v1/agents/{agent}/readiness", headers=stranger.headers),
        http.post(f"/v1/agents/{agent}/exams", headers=stranger.headers),
        http.get(f"/v1/agents/{agent}/exams", headers=stranger.headers),
    ):
        _error(response, 404, "not_found")
    _error(
        http.post(f"/v1/agents/{agent}/exams", headers=me.headers, json={"forced": True}),
        422,
        "invalid_request",
    )


def test_an_admin_may_force_an_exam_before_the_agent_is_ready(
    http: httpx.Client, me: Session, key: str
) -> None:
    agent = _create(http, me, _spec(key, GOOD))
    forced = http.post(f"/v1/agents/{agent}/exams", headers=me.headers, json={"force": True})
    assert forced.status_code == 201, forced.text
    assert forced.json()["status"] == "passed"
    assert _maturity(http, me, agent) == "INTERN"


def test_the_worker_examines_agents_that_became_ready(
    http: httpx.Client, database: Database, me: Session, key: str, engine_api: ApiServer
) -> None:
    ready = _ready_agent(http, database, me, key, GOOD)
    unready = _create(http, me, _spec(key, GOOD))
    _episodes(database, me, unready, 20)  # enough episodes, but nobody rated them
    no_cases = _create(http, me, _spec(key, GOOD, cases=[]))
    _rate(http, me, _episodes(database, me, no_cases, 20)[:5], 5)

    settings: Settings = engine_api.app.state.settings  # the API's vault holds the key
    vault = vault_for(settings)
    llm = LlmGateway(database, settings=settings, vault=vault)
    runtime = AgentRuntime(database, llm, ServicesCache(database, vault), settings.base_url)
    done = asyncio.run(start_due_exams(runtime, settings))
    mine = {d["agent_id"]: d for d in done if d["workspace_id"] == me.workspace_id}
    assert set(mine) == {ready}, done
    assert mine[ready]["status"] == "passed"
    assert _maturity(http, me, ready) == "INTERN"
    assert _maturity(http, me, unready) == _maturity(http, me, no_cases) == "STUDENT"
    (promoted,) = [e for e in _audit(http, me, ready) if e["event"] == "promoted"]
    assert promoted["actor"] == "worker"

    # Examined at this level already: the next round leaves it alone.
    again = asyncio.run(start_due_exams(runtime, settings))
    assert not [d for d in again if d["workspace_id"] == me.workspace_id]
    exams = http.get(f"/v1/agents/{ready}/exams", headers=me.headers).json()["items"]
    assert [(e["started_by"], e["status"]) for e in exams] == [("worker", "passed")]
    assert json.dumps(exams[0]["report"])  # the report is stored as JSON


def test_a_running_exam_left_by_a_dead_process_does_not_block_forever(
    http: httpx.Client, database: Database, me: Session, key: str
) -> None:
    agent = _ready_agent(http, database, me, key, GOOD)
    with database.tenant(UUID(me.workspace_id)) as conn:
        dead = exams_repo.insert_exam(
            conn,
            workspace_id=UUID(me.workspace_id),
            agent_id=UUID(agent),
            agent_version=1,
            from_level="STUDENT",
            to_level="INTERN",
            cases={},
            started_by="test",
        )
        conn.execute(
            "UPDATE agent_exams SET created_at = now() - interval '1 hour' WHERE id = %s",
            (dead["id"],),
        )
    started = http.post(f"/v1/agents/{agent}/exams", headers=me.headers)
    assert started.status_code == 201, started.text
    assert started.json()["status"] == "passed"
    stale = http.get(f"/v1/agents/{agent}/exams/{dead['id']}", headers=me.headers).json()
    assert stale["status"] == "error" and "interrupted" in stale["report"]["error"]


def test_loom_up_and_the_aws_job_run_the_worker(
    http: httpx.Client, database: Database, me: Session, key: str, engine_api: ApiServer
) -> None:
    from loom.runtime.local.exams import ExamWorker

    api_settings: Settings = engine_api.app.state.settings
    settings = api_settings.model_copy(update={"agent_exam_interval_seconds": 0.2})
    local = _ready_agent(http, database, me, key, GOOD)
    worker = ExamWorker(settings, database)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while _maturity(http, me, local) != "INTERN" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
    assert _maturity(http, me, local) == "INTERN"

    cloud = _ready_agent(http, database, me, key, GOOD)
    vault = vault_for(api_settings)
    llm = LlmGateway(database, settings=api_settings, vault=vault)
    runtime = AgentRuntime(database, llm, ServicesCache(database, vault), api_settings.base_url)
    with asyncio.Runner() as runner:  # closing it cancels litellm's logging worker
        platform = SimpleNamespace(
            settings=api_settings, model_runner=SimpleNamespace(agents=runtime), run=runner.run
        )
        outcome = exam_job(cast(Any, platform), {})
    assert outcome["exams"] >= 1 and outcome["passed"] >= 1
    assert _maturity(http, me, cloud) == "INTERN"


def test_exams_run_unattended_so_a_call_needing_approval_is_refused_at_once(
    http: httpx.Client, database: Database, me: Session, key: str
) -> None:
    governance = [case for case in _CASES if case["stage"] == "governance"]
    agent = _create(http, me, _spec(key, GOOD, cases=governance))
    with database.tenant(UUID(me.workspace_id)) as conn:
        agents_repo.set_maturity(conn, UUID(agent), "INTERN")  # writes need a person's yes
    started = time.monotonic()
    forced = http.post(f"/v1/agents/{agent}/exams", headers=me.headers, json={"force": True})
    assert forced.status_code == 201, forced.text
    assert time.monotonic() - started < 20  # nobody was waited for
    exam = forced.json()
    assert exam["status"] == "passed" and exam["to_level"] == "SUPERVISED"
    episode_id = exam["report"]["cases"][0]["runs"][0]["episode_id"]
    episode = http.get(f"/v1/episodes/{episode_id}", headers=me.headers).json()
    assert episode["kind"] == "exam"
    assert [(d["tool"], d["verdict"]) for d in episode["decisions"]] == [("save_note", "refused")]
    assert episode["decisions"][0]["approval"].startswith("Nobody attends this execution")
    pending = http.get("/v1/hil", headers=me.headers)
    assert pending.status_code == 200 and pending.json() == []  # no request was filed
