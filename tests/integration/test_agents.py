"""Governed agents through the API and the engine: specs and versions, governance inside
the tool loop (denials, approvals, delegation), episodes with feedback, and recall."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest

from loom.agents.recall import recall
from loom.db import Database
from loom.db.memory import vector_literal
from tests.utils.api import Session, allow_hosts, signup
from tests.utils.fake_llm import FakeLlm, Request, chat, provider_host, provider_key
from tests.utils.leaks import superuser_url
from tests.utils.loopback_http import LoopbackServer, Reply, Seen, serve
from tests.utils.pg import PgCluster

MODEL = "governed-model"


@pytest.fixture
def crm() -> Iterator[LoopbackServer]:
    """An outside system the agents may write to."""

    def answer(seen: Seen) -> Reply:
        return Reply(201, b'{"saved": true}', {"Content-Type": "application/json"})

    with serve(answer) as server:
        yield server


@pytest.fixture
def me(http: httpx.Client, fake: FakeLlm, crm: LoopbackServer) -> Session:
    owner = signup(http)
    allow_hosts(http, owner, provider_host(fake), crm.where)
    return owner


@pytest.fixture
def key(http: httpx.Client, me: Session, fake: FakeLlm) -> str:
    return provider_key(http, me, fake)


def _spec(key: str, *tools: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "role": "a careful assistant",
        "instructions": "Answer briefly.",
        "model": f"openai/{MODEL}",
        "credential_id": key,
        "tools": list(tools),
        **extra,
    }


def _create(http: httpx.Client, me: Session, spec: dict[str, Any], name: str = "") -> str:
    made = http.post(
        "/v1/agents", headers=me.headers, json={"name": name or uuid4().hex, "spec": spec}
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _set_maturity(database: Database, me: Session, agent_id: str, level: str) -> None:
    """Tests only: promotion belongs to graduation exams."""
    with database.tenant(UUID(me.workspace_id)) as conn:
        conn.execute("UPDATE agents SET maturity = %s WHERE id = %s", (level, agent_id))


def _save_tool(name: str = "save_note", **extra: Any) -> dict[str, Any]:
    return {
        "type": "CODE",
        "name": name,
        "description": "Save a note.",
        "input_schema": {"type": "object", "properties": {"note": {"type": "string"}}},
        "code": "def main(inputs):\n    return {'saved': inputs['input'].get('note')}",
        "risk": "write",
        **extra,
    }


def _post_tool(crm: LoopbackServer) -> dict[str, Any]:
    return {
        "type": "HTTP_REQUEST",
        "name": "file_ticket",
        "description": "File a ticket in the CRM.",
        "input_schema": {"type": "object", "properties": {"title": {"type": "string"}}},
        "request": {
            "method": "POST",
            "url": f"http://{crm.where}/tickets",
            "body": {"type": "json", "value": {"title": "{% $args.title %}"}},
        },
    }


def _workflow(agent_id: str, prompt: str = "{% $input.question %}") -> dict[str, Any]:
    return {
        "name": "governed",
        "nodes": [
            {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
            {
                "id": "agent",
                "type": "AI_AGENT",
                "subtype": "AGENT",
                "parameters": {"agent_id": agent_id, "prompt": prompt},
                "timeout_seconds": 120,
            },
        ],
        "edges": [{"from": "start", "to": "agent"}],
    }


def _start(http: httpx.Client, me: Session, definition: dict[str, Any], question: str) -> str:
    saved = http.post(
        "/v1/workflows", headers=me.headers, json={"name": uuid4().hex, "definition": definition}
    )
    assert saved.status_code == 201, saved.text
    started = http.post(
        f"/v1/workflows/{saved.json()['id']}/runs",
        headers=me.headers,
        json={"input": {"question": question}},
    )
    assert started.status_code == 202, started.text
    return str(started.json()["run_id"])


def _finished(http: httpx.Client, me: Session, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run: dict[str, Any] = http.get(f"/v1/runs/{run_id}", headers=me.headers).json()
        if run["status"] in ("SUCCESS", "ERROR"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def _agent_output(run: dict[str, Any]) -> dict[str, Any]:
    node = next(n for n in run["nodes"] if n["node_id"] == "agent")
    assert node["status"] == "completed", node
    output: dict[str, Any] = node["output"]
    return output


def _tool_messages(request: Request) -> list[dict[str, Any]]:
    return [m for m in request.body["messages"] if m["role"] == "tool"]


# -- specs and versions ---------------------------------------------------------------------


def test_agents_are_versioned_with_a_live_pointer(
    http: httpx.Client, me: Session, key: str
) -> None:
    agent_id = _create(http, me, _spec(key), name="triage")
    first = http.get(f"/v1/agents/{agent_id}", headers=me.headers).json()
    assert (first["version"], first["live_version"], first["maturity"]) == (1, 1, "STUDENT")

    changed = _spec(key, instructions="Answer in one word.")
    draft = http.put(
        f"/v1/agents/{agent_id}",
        headers=me.headers,
        json={"name": "triage", "spec": changed, "publish": False},
    ).json()
    assert (draft["version"], draft["live_version"]) == (2, 1)
    assert draft["spec"]["instructions"] == "Answer briefly."  # the live one

    published = http.post(
        f"/v1/agents/{agent_id}/publish", headers=me.headers, json={"version": 2}
    ).json()
    assert published["spec"]["instructions"] == "Answer in one word."
    versions = http.get(f"/v1/agents/{agent_id}/versions", headers=me.headers).json()
    assert [v["version"] for v in versions] == [1, 2]
    old = http.get(f"/v1/agents/{agent_id}/versions/1", headers=me.headers).json()
    assert old["spec"]["instructions"] == "Answer briefly."

    markdown = http.get(f"/v1/agents/{agent_id}/markdown", headers=me.headers)
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "# triage (version 2)" in markdown.text
    assert "**Maturity:** STUDENT" in markdown.text

    audit = http.get(f"/v1/agents/{agent_id}/audit", headers=me.headers).json()
    assert [e["event"] for e in audit["items"]] == ["published"]

    assert http.delete(f"/v1/agents/{agent_id}", headers=me.headers).status_code == 204
    assert http.get(f"/v1/agents/{agent_id}", headers=me.headers).status_code == 404


def test_a_spec_naming_what_does_not_exist_is_refused_with_the_reason(
    http: httpx.Client, me: Session, key: str
) -> None:
    unknown_tool = _spec(key, {"type": "SHELL", "name": "sh", "description": "run"})
    answer = http.post("/v1/agents", headers=me.headers, json={"name": "a", "spec": unknown_tool})
    assert answer.status_code == 422
    assert any("tools" in d["path"] for d in answer.json()["error"]["details"])

    bad_models = _spec(key, model="nosuchprovider/x", fallbacks=["local/no-such-model"])
    answer = http.post("/v1/agents", headers=me.headers, json={"name": "b", "spec": bad_models})
    assert answer.status_code == 422, answer.text
    details = {d["path"]: d["message"] for d in answer.json()["error"]["details"]}
    assert "nosuchprovider" in details["spec.model"]
    assert "local/no-such-model" in details["spec.fallbacks.0"]

    missing = _spec(
        key,
        {
            "type": "WORKFLOW",
            "name": "wf",
            "description": "Run it.",
            "workflow_id": str(uuid4()),
        },
        {"type": "AGENT", "name": "ask", "description": "Ask.", "agent_id": str(uuid4())},
    )
    answer = http.post("/v1/agents", headers=me.headers, json={"name": "c", "spec": missing})
    assert answer.status_code == 422
    paths = sorted(d["path"] for d in answer.json()["error"]["details"])
    assert paths == ["spec.tools.0", "spec.tools.1"]

    lowered = _spec(key, {**_save_tool(), "type": "HTTP_REQUEST", "risk": "read"})
    lowered["tools"][0] = {
        "type": "HTTP_REQUEST",
        "name": "post",
        "description": "Post.",
        "request": {"method": "POST", "url": "https://example.com"},
        "risk": "read",
    }
    answer = http.post("/v1/agents", headers=me.headers, json={"name": "d", "spec": lowered})
    assert answer.status_code == 422
    assert "raised, not lowered" in answer.text
    listed = http.get("/v1/agents", headers=me.headers).json()
    assert listed["items"] == []  # nothing half-saved


# -- governance inside the tool loop ------------------------------------------------------


def test_a_student_agents_write_tool_is_denied_and_the_model_is_told_why(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm
) -> None:
    agent_id = _create(http, me, _spec(key, _save_tool()))
    fake.script(
        MODEL,
        chat(None, tool_calls=[("save_note", {"note": "remember this"})]),
        chat("I could not save the note."),
    )
    run = _finished(http, me, _start(http, me, _workflow(agent_id), "save a note"))
    output = _agent_output(run)

    [tool_message] = _tool_messages(fake.requests[-1])
    assert "Not allowed" in tool_message["content"]
    assert "STUDENT agents may not use write tools" in tool_message["content"]
    [decision] = output["agent"]["decisions"]
    assert (decision["verdict"], decision["risk"], decision["tool"]) == (
        "deny",
        "write",
        "save_note",
    )
    assert output["tool_calls"][0]["refused"].startswith("STUDENT agents may not")

    episode = http.get(f"/v1/episodes/{output['agent']['episode_id']}", headers=me.headers).json()
    assert episode["outcome"] == "success"
    assert episode["run_id"] == run["id"]
    assert episode["decisions"][0]["verdict"] == "deny"
    audit = http.get(f"/v1/agents/{agent_id}/audit", headers=me.headers).json()["items"]
    assert [(e["event"], e["detail"]["verdict"]) for e in audit] == [("tool_decision", "deny")]


def _intern_files_a_ticket(
    http: httpx.Client,
    me: Session,
    key: str,
    fake: FakeLlm,
    crm: LoopbackServer,
    database: Database,
    title: str,
    reply: str,
) -> tuple[str, dict[str, Any]]:
    """An INTERN agent's run that calls its external tool: the run id and the approval
    request it waits on."""
    agent_id = _create(http, me, _spec(key, _post_tool(crm)))
    _set_maturity(database, me, agent_id, "INTERN")
    fake.script(MODEL, chat(None, tool_calls=[("file_ticket", {"title": title})]), chat(reply))
    run_id = _start(http, me, _workflow(agent_id), "file a ticket")
    return run_id, _pending_approval(http, me)


def test_an_interns_external_action_waits_for_approval_and_proceeds_when_approved(
    http: httpx.Client,
    me: Session,
    key: str,
    fake: FakeLlm,
    crm: LoopbackServer,
    database: Database,
) -> None:
    run_id, request = _intern_files_a_ticket(
        http, me, key, fake, crm, database, "Printer on fire", "Filed."
    )
    assert request["kind"] == "tool_approval"
    assert request["request"]["tool"] == "file_ticket"
    assert request["request"]["arguments"] == {"title": "Printer on fire"}
    time.sleep(0.3)
    assert crm.seen == []  # nothing sent before a person said yes
    answered = http.post(
        f"/v1/hil/{request['id']}/respond", headers=me.headers, json={"approved": True}
    )
    assert answered.status_code == 200, answered.text

    output = _agent_output(_finished(http, me, run_id))
    assert output["text"] == "Filed."
    assert [json.loads(s.body) for s in crm.seen] == [{"title": "Printer on fire"}]
    [decision] = output["agent"]["decisions"]
    assert decision["verdict"] == "approved"
    assert decision["approval"] == "A person approved the call."
    again = http.post(
        f"/v1/hil/{request['id']}/respond", headers=me.headers, json={"approved": False}
    )
    assert again.status_code == 409


def test_a_rejected_approval_is_reported_to_the_model(
    http: httpx.Client,
    me: Session,
    key: str,
    fake: FakeLlm,
    crm: LoopbackServer,
    database: Database,
) -> None:
    run_id, request = _intern_files_a_ticket(
        http, me, key, fake, crm, database, "x", "A person said no."
    )
    http.post(f"/v1/hil/{request['id']}/respond", headers=me.headers, json={"approved": False})

    output = _agent_output(_finished(http, me, run_id))
    assert crm.seen == []
    [tool_message] = _tool_messages(fake.requests[-1])
    assert "A person rejected the call." in tool_message["content"]
    assert output["agent"]["decisions"][0]["verdict"] == "refused"


def test_the_workspace_policy_overrides_the_default(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm
) -> None:
    changed = http.put(
        "/v1/workspaces/current/settings",
        headers=me.headers,
        json={"agent_policy": {"STUDENT": {"write": "allow"}}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["agent_policy"]["STUDENT"]["write"] == "allow"
    bad = http.put(
        "/v1/workspaces/current/settings",
        headers=me.headers,
        json={"agent_policy": {"GENIUS": {"write": "allow"}, "INTERN": {"write": "maybe"}}},
    )
    assert bad.status_code == 422
    assert len(bad.json()["error"]["details"]) == 2

    agent_id = _create(http, me, _spec(key, _save_tool()))
    fake.script(MODEL, chat(None, tool_calls=[("save_note", {"note": "n"})]), chat("Saved."))
    output = _agent_output(_finished(http, me, _start(http, me, _workflow(agent_id), "save")))
    assert output["tool_calls"][0]["ok"] is True
    assert output["agent"]["decisions"][0]["verdict"] == "allow"


def test_delegation_applies_the_callees_limits_and_links_the_episodes(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    callee = _create(http, me, _spec(key, _save_tool()), name="clerk")
    caller_spec = _spec(
        key,
        {"type": "AGENT", "name": "ask_clerk", "description": "Ask the clerk.", "agent_id": callee},
    )
    caller = _create(http, me, caller_spec, name="manager")
    _set_maturity(database, me, caller, "AUTONOMOUS")  # may spend on another agent
    fake.script(
        MODEL,
        chat(None, tool_calls=[("ask_clerk", {"message": "save the note"})]),  # manager
        chat(None, tool_calls=[("save_note", {"note": "n"})]),  # clerk, a STUDENT
        chat("I may not save notes."),  # clerk
        chat("The clerk could not save it."),  # manager
    )
    output = _agent_output(_finished(http, me, _start(http, me, _workflow(caller), "delegate")))

    assert output["agent"]["decisions"][0]["verdict"] == "allow"
    delegated = json.loads(_tool_messages(fake.requests[-1])[0]["content"])
    assert delegated["answer"] == "I may not save notes."
    clerk_episode = http.get(f"/v1/episodes/{delegated['episode_id']}", headers=me.headers).json()
    assert clerk_episode["kind"] == "delegation"
    assert clerk_episode["parent_episode_id"] == output["agent"]["episode_id"]
    assert clerk_episode["decisions"][0]["verdict"] == "deny"  # the callee's own level


def test_delegation_is_denied_below_its_level(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm
) -> None:
    callee = _create(http, me, _spec(key), name="clerk")
    caller = _create(
        http,
        me,
        _spec(key, {"type": "AGENT", "name": "ask", "description": "Ask.", "agent_id": callee}),
    )
    fake.script(MODEL, chat(None, tool_calls=[("ask", {"message": "hi"})]), chat("Alone."))
    output = _agent_output(_finished(http, me, _start(http, me, _workflow(caller), "go")))
    assert output["agent"]["decisions"][0]["risk"] == "spend"
    assert output["agent"]["decisions"][0]["verdict"] == "deny"
    assert fake.calls(MODEL) == 2  # the callee never ran


# -- episodes, feedback and recall --------------------------------------------------------


def test_recall_brings_a_past_correction_into_a_later_episode(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm
) -> None:
    agent_id = _create(http, me, _spec(key))
    fake.script(MODEL, chat("The office opens at 9."))
    first = _agent_output(
        _finished(http, me, _start(http, me, _workflow(agent_id), "When does the office open?"))
    )
    episode_id = first["agent"]["episode_id"]
    fed = http.post(
        f"/v1/episodes/{episode_id}/feedback",
        headers=me.headers,
        json={"rating": -1, "correction": "The office opens at 8:30 on weekdays."},
    )
    assert fed.status_code == 200, fed.text
    assert (fed.json()["feedback_rating"], fed.json()["feedback_correction"]) == (
        -1,
        "The office opens at 8:30 on weekdays.",
    )

    fake.script(MODEL, chat("It opens at 8:30."))
    question = "What time does the office open?"
    later = _agent_output(_finished(http, me, _start(http, me, _workflow(agent_id), question)))
    sent = fake.requests[-1].body["messages"]
    recalled_context = [m["content"] for m in sent if m["role"] == "system"][1]
    assert "The office opens at 8:30 on weekdays." in recalled_context
    [recalled] = later["agent"]["recalled"]
    assert recalled["episode_id"] == episode_id
    stored = http.get(f"/v1/episodes/{later['agent']['episode_id']}", headers=me.headers).json()
    assert stored["recalled"][0]["correction"] == "The office opens at 8:30 on weekdays."


def test_unrelated_episodes_are_not_recalled(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm
) -> None:
    agent_id = _create(http, me, _spec(key))
    fake.script(MODEL, chat("Paris."), chat("Blue whales."))
    _finished(http, me, _start(http, me, _workflow(agent_id), "What is the capital of France?"))
    later = _agent_output(
        _finished(http, me, _start(http, me, _workflow(agent_id), "Which mammal is the largest?"))
    )
    assert later["agent"]["recalled"] == []


def test_feedback_on_another_workspaces_episode_answers_404(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm
) -> None:
    agent_id = _create(http, me, _spec(key))
    fake.script(MODEL, chat("Hi."))
    output = _agent_output(_finished(http, me, _start(http, me, _workflow(agent_id), "hi")))
    stranger = signup(http)
    episode = output["agent"]["episode_id"]
    answer = http.post(
        f"/v1/episodes/{episode}/feedback", headers=stranger.headers, json={"rating": 5}
    )
    assert answer.status_code == 404
    assert http.get(f"/v1/episodes/{episode}", headers=stranger.headers).status_code == 404
    attempts = [
        ("GET", f"/v1/agents/{agent_id}", None),
        ("PUT", f"/v1/agents/{agent_id}", {"name": "taken", "spec": _spec(key)}),
        ("DELETE", f"/v1/agents/{agent_id}", None),
        ("POST", f"/v1/agents/{agent_id}/publish", {"version": 1}),
        ("GET", f"/v1/agents/{agent_id}/versions", None),
        ("GET", f"/v1/agents/{agent_id}/markdown", None),
        ("GET", f"/v1/agents/{agent_id}/audit", None),
        ("GET", f"/v1/agents/{agent_id}/episodes", None),
    ]
    for method, path, body in attempts:
        response = http.request(method, path, json=body, headers=stranger.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    mine = http.get(f"/v1/episodes/{episode}", headers=me.headers).json()
    assert mine["feedback_rating"] is None
    still = http.get(f"/v1/agents/{agent_id}", headers=me.headers).json()
    assert (still["version"], still["live_version"]) == (1, 1)
    assert still["name"] != "taken"


def test_bad_feedback_is_refused(http: httpx.Client, me: Session) -> None:
    answer = http.post(f"/v1/episodes/{uuid4()}/feedback", headers=me.headers, json={"rating": 9})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["path"] == "body.rating"


def _pending_approval(http: httpx.Client, me: Session) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pending = http.get("/v1/hil?status=pending", headers=me.headers).json()
        if pending:
            found: dict[str, Any] = pending[0]
            return found
        time.sleep(0.05)
    raise AssertionError("no approval was requested")


def test_recall_finds_a_few_episodes_among_many_of_other_agents(
    http: httpx.Client, me: Session, key: str, database: Database, cluster: PgCluster
) -> None:
    crowd, loner = _create(http, me, _spec(key)), _create(http, me, _spec(key))
    query = [1.0] + [0.0] * 383
    near = [0.9, 0.1] + [0.0] * 382
    workspace = UUID(me.workspace_id)
    with database.tenant(workspace) as conn:
        # Enough rows that the planner walks the HNSW index rather than sorting them all.
        for agent, vector, count in [(crowd, query, 5000), (loner, near, 1)]:
            conn.execute(
                "INSERT INTO episodes (workspace_id, agent_id, agent_version, outcome, summary, "
                "embedding) SELECT %s, %s, 1, 'success', 'seen', %s::vector "
                "FROM generate_series(1, %s)",
                (workspace, agent, vector_literal(vector), count),
            )
    with psycopg.connect(superuser_url(cluster), autocommit=True) as conn:
        conn.execute("ANALYZE episodes")  # so the planner knows the index pays
    found = asyncio.run(recall(database, workspace, UUID(loner), query, limit=3, token_budget=600))
    assert len(found) == 1 and found[0].distance < 0.01
    crowded = asyncio.run(
        recall(database, workspace, UUID(crowd), query, limit=3, token_budget=600)
    )
    assert len(crowded) == 3
