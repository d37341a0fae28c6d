"""Chat with governed agents over the real API and local engine, against the scripted
provider on 127.0.0.1 (and once against the offline local model): streamed turns, threads
and their running summary, tool calls as they happen, governance in chat (a refusal and a
tool approval), workflows as tools outside a run, and bad input."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest

from loom.agents.registry import create_agent
from loom.agents.spec import AgentSpec
from loom.db import Database
from tests.utils.api import Session, allow_hosts, signup
from tests.utils.engine import example
from tests.utils.fake_llm import (
    FakeLlm,
    Request,
    auth_error,
    chat,
    embeddings,
    provider_host,
    provider_key,
    stream,
)
from tests.utils.loopback_http import LoopbackServer, Reply, serve

MODEL = "chat-model"
NO_RECALL = {"recall": {"enabled": False}}
Event = tuple[str, dict[str, Any]]


@pytest.fixture
def outside() -> Iterator[LoopbackServer]:
    """Where an agent's external tool posts to."""
    with serve(
        lambda seen: Reply(200, b'{"sent": true}', {"Content-Type": "application/json"})
    ) as s:
        yield s


@pytest.fixture
def me(http: httpx.Client, fake: FakeLlm, outside: LoopbackServer) -> Session:
    owner = signup(http)
    allow_hosts(http, owner, provider_host(fake), outside.where)
    return owner


@pytest.fixture
def key(http: httpx.Client, me: Session, fake: FakeLlm) -> str:
    return provider_key(http, me, fake)


def _agent(database: Database, session: Session, maturity: str = "STUDENT", **spec: Any) -> str:
    """A new agent of the session's workspace at ``maturity`` (set in the database: the
    promotion path is the exams' business)."""
    workspace = UUID(session.workspace_id)
    made = create_agent(
        database,
        workspace,
        name=f"agent-{uuid.uuid4().hex[:8]}",
        description="",
        spec=AgentSpec.model_validate({"role": "a helpful assistant", **spec}),
        created_by=None,
    )
    with database.tenant(workspace) as conn:
        conn.execute("UPDATE agents SET maturity = %s WHERE id = %s", (maturity, made["id"]))
    return str(made["id"])


def _spec(key: str, **more: Any) -> dict[str, Any]:
    return {"model": f"openai/{MODEL}", "credential_id": key, "memory": NO_RECALL, **more}


def _chat(
    http: httpx.Client,
    session: Session,
    agent_id: str,
    message: str,
    *,
    thread_id: str | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[Event]:
    """One turn: every SSE event in order (``on_event`` sees each as it arrives)."""
    body: dict[str, Any] = {"message": message}
    if thread_id is not None:
        body["thread_id"] = thread_id
    events: list[Event] = []
    with http.stream(
        "POST", f"/v1/agents/{agent_id}/chat", json=body, headers=session.headers
    ) as response:
        assert response.status_code == 200, response.read().decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        kind, data = "", ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif not line and kind:
                events.append((kind, json.loads(data)))
                if on_event is not None:
                    on_event(*events[-1])
                kind, data = "", ""
    return events


def _kinds(events: list[Event]) -> list[str]:
    return [kind for kind, _ in events]


def _one(events: list[Event], kind: str) -> dict[str, Any]:
    [found] = [data for k, data in events if k == kind]
    return found


def _text(events: list[Event]) -> str:
    return "".join(data["text"] for kind, data in events if kind == "delta")


def _tool_messages(request: Request) -> list[dict[str, Any]]:
    return [m for m in request.body["messages"] if m["role"] == "tool"]


def _thread(http: httpx.Client, session: Session, thread_id: str) -> dict[str, Any]:
    found = http.get(f"/v1/threads/{thread_id}", headers=session.headers)
    assert found.status_code == 200, found.text
    thread: dict[str, Any] = found.json()
    return thread


def test_a_turn_streams_its_reply_and_ends_with_the_stored_message(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    agent = _agent(database, me, **_spec(key, instructions="Be brief."))
    fake.script(MODEL, stream(["Hel", "lo ", "there."]))
    events = _chat(http, me, agent, "Hi!")
    kinds = _kinds(events)
    assert kinds[0] == "thread" and kinds[-2:] == ["message", "end"], kinds
    assert kinds.count("delta") == 3 and kinds.index("delta") > kinds.index("episode")
    assert _text(events) == "Hello there."
    episode_id = _one(events, "episode")["episode_id"]
    done = _one(events, "message")
    assert (done["episode_id"], done["content"]) == (episode_id, "Hello there.")
    thread_id = _one(events, "thread")["thread_id"]
    assert done["thread_id"] == thread_id
    [sent] = fake.requests
    assert sent.body["stream"] is True
    assert sent.body["messages"][0]["content"].endswith("Be brief.")
    assert sent.body["messages"][1:] == [{"role": "user", "content": "Hi!"}]
    with database.tenant(me.workspace_id) as conn:
        row = conn.execute(
            "SELECT kind, thread_id, outcome FROM episodes WHERE id = %s", (episode_id,)
        ).fetchone()
    assert row is not None
    assert (row["kind"], str(row["thread_id"]), row["outcome"]) == ("chat", thread_id, "success")
    listed = http.get(f"/v1/agents/{agent}/threads", headers=me.headers).json()["items"]
    assert [(t["id"], t["title"], t["messages"], t["busy"]) for t in listed] == [
        (thread_id, "Hi!", 2, False)
    ]


def test_a_second_turn_sees_the_first_and_the_thread_keeps_both_in_order(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    agent = _agent(database, me, **_spec(key))
    fake.script(MODEL, stream(["Ada is 36."]), stream(["You asked about Ada."]))
    first = _chat(http, me, agent, "How old is Ada?")
    thread_id = _one(first, "thread")["thread_id"]
    second = _chat(http, me, agent, "What did I ask?", thread_id=thread_id)
    assert _one(second, "thread")["thread_id"] == thread_id
    assert fake.requests[1].body["messages"][1:] == [
        {"role": "user", "content": "How old is Ada?"},
        {"role": "assistant", "content": "Ada is 36."},
        {"role": "user", "content": "What did I ask?"},
    ]
    thread = _thread(http, me, thread_id)
    episodes = [_one(first, "episode")["episode_id"], _one(second, "episode")["episode_id"]]
    assert [(m["role"], m["content"], m["episode_id"]) for m in thread["messages"]] == [
        ("user", "How old is Ada?", episodes[0]),
        ("assistant", "Ada is 36.", episodes[0]),
        ("user", "What did I ask?", episodes[1]),
        ("assistant", "You asked about Ada.", episodes[1]),
    ]
    ids = [m["id"] for m in thread["messages"]]
    assert ids == sorted(ids) and thread["next_after"] is None and not thread["busy"]
    page = http.get(f"/v1/threads/{thread_id}?after={ids[0]}&limit=2", headers=me.headers)
    assert [m["id"] for m in page.json()["messages"]] == ids[1:3]
    assert page.json()["next_after"] == ids[2]


def test_tool_calls_reach_the_stream_as_they_happen(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    add = {
        "type": "CODE",
        "name": "add",
        "description": "Add two numbers.",
        "input_schema": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
        "code": "def main(inputs):\n    return inputs['input']['a'] + inputs['input']['b']\n",
    }
    agent = _agent(database, me, **_spec(key, tools=[add]))
    result_seen = threading.Event()

    def after_the_tool(body: dict[str, Any]) -> Reply:
        # The model is asked again only after the tool ran; by then the caller must have
        # seen the result, or events are held back until the end of the turn.
        assert result_seen.wait(10), "the tool's result had not reached the stream"
        return stream(["It is 5."])

    fake.script(MODEL, stream([], tool_call=("add", '{"a": 2, "b": 3}')), after_the_tool)

    def watch(kind: str, data: dict[str, Any]) -> None:
        if kind == "tool_result":
            result_seen.set()

    events = _chat(http, me, agent, "2 + 3?", on_event=watch)
    kinds = _kinds(events)
    assert kinds.index("tool_call") < kinds.index("governance") < kinds.index("tool_result")
    assert kinds.index("tool_result") < kinds.index("delta") < kinds.index("message")
    assert _one(events, "tool_call") == {"tool": "add", "arguments": {"a": 2, "b": 3}}
    assert _one(events, "tool_result") == {"tool": "add", "ok": True}
    assert _one(events, "governance")["verdict"] == "allow"
    assert [m["content"] for m in _tool_messages(fake.requests[1])] == ["5"]
    done = _one(events, "message")
    assert done["content"] == "It is 5."
    assert [(c["tool"], c["ok"]) for c in done["tool_calls"]] == [("add", True)]
    stored = _thread(http, me, done["thread_id"])["messages"][-1]
    assert stored["tool_calls"] == done["tool_calls"]


def test_a_students_write_tool_is_refused_and_both_the_model_and_the_user_hear_why(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    fake.always("embedder", embeddings(384))
    notes = {"type": "VECTOR_MEMORY", "collection": "notes", "embedding_model": "openai/embedder"}
    agent = _agent(database, me, "STUDENT", **_spec(key, tools=[notes]))
    fake.script(
        MODEL,
        stream([], tool_call=("remember_notes", '{"text": "Ada prefers email."}')),
        stream(["I am not allowed to remember that."]),
    )
    events = _chat(http, me, agent, "Remember that Ada prefers email.")
    decision = _one(events, "governance")
    assert (decision["tool"], decision["risk"], decision["verdict"]) == (
        "remember_notes",
        "write",
        "deny",
    )
    assert "STUDENT agents may not use write tools" in decision["reason"]
    assert _one(events, "tool_result")["refused"] == decision["reason"]
    [refusal] = _tool_messages(fake.requests_for(MODEL)[1])
    assert "Not allowed: STUDENT agents may not use write tools" in refusal["content"]
    assert _one(events, "message")["content"] == "I am not allowed to remember that."
    with database.tenant(me.workspace_id) as conn:
        stored = conn.execute("SELECT count(*) AS n FROM memory_vectors").fetchone()
        episode = conn.execute(
            "SELECT decisions FROM episodes WHERE id = %s", (_one(events, "episode")["episode_id"],)
        ).fetchone()
    assert stored is not None and stored["n"] == 0, "the refused tool never ran"
    assert episode is not None and [d["verdict"] for d in episode["decisions"]] == ["deny"]


def test_an_interns_external_tool_waits_for_a_persons_approval(
    http: httpx.Client,
    me: Session,
    key: str,
    fake: FakeLlm,
    database: Database,
    outside: LoopbackServer,
) -> None:
    notify = {
        "type": "HTTP_REQUEST",
        "name": "notify",
        "description": "Send a notice.",
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "request": {
            "method": "POST",
            "url": outside.url("/notices"),
            "body": {"type": "json", "value": "{% $args %}"},
        },
    }
    agent = _agent(database, me, "INTERN", **_spec(key, tools=[notify]))
    fake.script(MODEL, stream([], tool_call=("notify", '{"text": "hi"}')), stream(["Sent it."]))
    checked: dict[str, Any] = {}

    def approve(kind: str, data: dict[str, Any]) -> None:
        if kind != "approval_required":
            return
        checked["before"] = len(outside.seen)
        busy = http.post(
            f"/v1/agents/{agent}/chat",
            headers=me.headers,
            json={"message": "and another thing", "thread_id": checked["thread_id"]},
        )
        checked["busy"] = (busy.status_code, busy.json()["error"]["code"])
        answered = http.post(
            f"/v1/hil/{data['request_id']}/respond", headers=me.headers, json={"approved": True}
        )
        checked["answered"] = answered.status_code

    def watch(kind: str, data: dict[str, Any]) -> None:
        if kind == "thread":
            checked["thread_id"] = data["thread_id"]
        approve(kind, data)

    events = _chat(http, me, agent, "Tell them hi.", on_event=watch)
    assert checked == {
        "thread_id": _one(events, "thread")["thread_id"],
        "before": 0,
        "busy": (409, "thread_busy"),
        "answered": 200,
    }, "nothing was sent before the approval, and the thread took one turn at a time"
    asked = _one(events, "approval_required")
    assert asked["tool"] == "notify" and asked["link"].startswith("http")
    assert "/v1/public/hil/" in asked["link"]
    assert _one(events, "governance")["verdict"] == "approve"
    assert _one(events, "approval")["approved"] is True
    assert _one(events, "tool_result")["ok"] is True
    assert _one(events, "message")["content"] == "Sent it."
    [sent] = outside.seen
    assert (sent.method, sent.path, json.loads(sent.body)) == ("POST", "/notices", {"text": "hi"})
    thread = _thread(http, me, checked["thread_id"])
    assert [m["content"] for m in thread["messages"]] == ["Tell them hi.", "Sent it."]


def test_a_long_thread_folds_its_older_messages_into_a_running_summary(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    memory = {**NO_RECALL, "recent_messages": 2, "summarize_over_tokens": 200}
    agent = _agent(database, me, **_spec(key, memory=memory))
    oldest = "alpha-marker " + "a" * 900
    fake.script(
        MODEL,
        stream(["first reply"]),
        stream(["second reply"]),
        chat("They asked about alpha."),
        stream(["third reply"]),
    )
    thread_id = _one(_chat(http, me, agent, oldest), "thread")["thread_id"]
    _chat(http, me, agent, "beta " + "b" * 900, thread_id=thread_id)
    third = _chat(http, me, agent, "gamma?", thread_id=thread_id)
    fold, answer = fake.requests[2:]
    assert "running summary" in fold.body["messages"][0]["content"]
    assert "alpha-marker" in fold.body["messages"][1]["content"]
    assert "first reply" in fold.body["messages"][1]["content"]
    shown = answer.body["messages"]
    assert shown[1] == {
        "role": "system",
        "content": "Summary of the conversation so far: They asked about alpha.",
    }
    assert [m["content"] for m in shown[2:]] == ["beta " + "b" * 900, "second reply", "gamma?"]
    assert not any("alpha-marker" in str(m["content"]) for m in shown), "the oldest is folded"
    thread = _thread(http, me, thread_id)
    first_reply = thread["messages"][1]["id"]
    assert _one(third, "summary") == {"summarized_through": first_reply, "messages": 2}
    assert (thread["summary"], thread["summarized_through"]) == (
        "They asked about alpha.",
        first_reply,
    )
    assert len(thread["messages"]) == 6, "folded messages stay readable in the thread"


def test_a_failed_turn_says_why_and_frees_its_thread(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    agent = _agent(database, me, **_spec(key))
    fake.script(MODEL, auth_error(), stream(["Now I can answer."]))
    failed = _chat(http, me, agent, "first try")
    assert _kinds(failed)[-2:] == ["error", "end"]
    error = _one(failed, "error")
    assert error["code"] == "llm_auth" and error["message"] and error["solution"]
    assert error["episode_id"] == _one(failed, "episode")["episode_id"]
    thread_id = _one(failed, "thread")["thread_id"]
    retried = _chat(http, me, agent, "second try", thread_id=thread_id)
    assert _one(retried, "message")["content"] == "Now I can answer."
    assert fake.requests[1].body["messages"][1:] == [
        {"role": "user", "content": "first try"},
        {"role": "user", "content": "second try"},
    ]
    thread = _thread(http, me, thread_id)
    assert [(m["role"], m["episode_id"]) for m in thread["messages"]] == [
        ("user", error["episode_id"]),
        ("user", _one(retried, "episode")["episode_id"]),
        ("assistant", _one(retried, "episode")["episode_id"]),
    ]
    with database.tenant(me.workspace_id) as conn:
        row = conn.execute(
            "SELECT outcome FROM episodes WHERE id = %s", (error["episode_id"],)
        ).fetchone()
    assert row is not None and row["outcome"] == "failure"


def test_a_turn_goes_on_when_its_caller_goes_away(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    agent = _agent(database, me, **_spec(key))
    gone = threading.Event()

    def once_gone(body: dict[str, Any]) -> Reply:
        assert gone.wait(10)
        return stream(["Answered anyway."])

    fake.script(MODEL, once_gone)
    with http.stream(
        "POST", f"/v1/agents/{agent}/chat", json={"message": "hi"}, headers=me.headers
    ) as response:
        lines = response.iter_lines()
        first, data = next(lines), next(lines)
    assert first == "event: thread"
    thread_id = json.loads(data.removeprefix("data: "))["thread_id"]
    gone.set()
    deadline = time.monotonic() + 20
    while (thread := _thread(http, me, thread_id))["busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m["content"] for m in thread["messages"]] == ["hi", "Answered anyway."]


def test_a_message_over_the_limit_is_refused_and_nothing_is_stored(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    agent = _agent(database, me, **_spec(key))
    refused = http.post(
        f"/v1/agents/{agent}/chat", headers=me.headers, json={"message": "x" * 1_000_000}
    )
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert error["code"] == "message_too_large" and "32,000" in error["message"]
    assert error["solution"]
    assert http.get(f"/v1/agents/{agent}/threads", headers=me.headers).json()["items"] == []
    fake.script(MODEL, stream(["ok"]))
    thread_id = _one(_chat(http, me, agent, "short"), "thread")["thread_id"]
    again = http.post(
        f"/v1/agents/{agent}/chat",
        headers=me.headers,
        json={"message": "y" * 32_001, "thread_id": thread_id},
    )
    assert again.status_code == 413
    assert len(_thread(http, me, thread_id)["messages"]) == 2
    assert fake.calls(MODEL) == 1


def test_threads_of_other_workspaces_and_other_agents_are_refused(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    mine = _agent(database, me, **_spec(key))
    also_mine = _agent(database, me, **_spec(key))
    fake.script(MODEL, stream(["ok"]))
    thread_id = _one(_chat(http, me, mine, "hello"), "thread")["thread_id"]
    stranger = signup(http)
    theirs = _agent(database, stranger, model="openai/other-model")

    assert http.get(f"/v1/threads/{thread_id}", headers=stranger.headers).status_code == 404
    for agent_id, session, body in [
        (mine, stranger, {"message": "hi"}),  # another workspace's agent
        (theirs, stranger, {"message": "hi", "thread_id": thread_id}),  # its thread
        (str(uuid.uuid4()), me, {"message": "hi"}),
        (mine, me, {"message": "hi", "thread_id": str(uuid.uuid4())}),
    ]:
        refused = http.post(f"/v1/agents/{agent_id}/chat", headers=session.headers, json=body)
        assert refused.status_code == 404, (agent_id, body, refused.text)
    other_agent = http.post(
        f"/v1/agents/{also_mine}/chat",
        headers=me.headers,
        json={"message": "hi", "thread_id": thread_id},
    )
    assert other_agent.status_code == 409
    assert other_agent.json()["error"]["code"] == "thread_of_another_agent"
    listed = http.get(f"/v1/agents/{mine}/threads", headers=stranger.headers)
    assert listed.status_code == 404
    assert len(_thread(http, me, thread_id)["messages"]) == 2
    assert fake.calls() == 1


def test_a_workflow_as_a_tool_runs_on_the_engine_from_chat(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    helper = http.post(
        "/v1/workflows",
        headers=me.headers,
        json={"name": "shape", "definition": example("transform")},
    ).json()["id"]
    quote = {
        "type": "WORKFLOW",
        "name": "quote",
        "description": "Price an order.",
        "workflow_id": helper,
    }
    agent = _agent(database, me, "AUTONOMOUS", **_spec(key, tools=[quote]))
    arguments = {"customer": {"name": "ada"}, "lines": [{"price": 2, "qty": 3}]}
    fake.script(
        MODEL, stream([], tool_call=("quote", json.dumps(arguments))), stream(["It costs 6."])
    )
    events = _chat(http, me, agent, "Price it.")
    assert _one(events, "tool_result") == {"tool": "quote", "ok": True}
    result = json.loads(_tool_messages(fake.requests[1])[0]["content"])
    assert (result["customer"], result["total"]) == ("ADA", 6)
    runs = http.get(f"/v1/runs?workflow_id={helper}", headers=me.headers).json()["items"]
    assert [(r["status"], r["trigger"]["type"], r["trigger"]["via"]) for r in runs] == [
        ("SUCCESS", "agent_tool", "chat")
    ]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_chat_with_the_offline_local_model(http: httpx.Client, database: Database) -> None:
    from loom.llm.local import stop_local_models

    me = signup(http)
    agent = _agent(database, me, model="local/smollm2-135m-instruct", max_tokens=40)
    started = time.monotonic()
    try:
        events = _chat(http, me, agent, "Say hello in one short sentence.")
    finally:
        stop_local_models()
    done = _one(events, "message")
    assert _kinds(events)[-2:] == ["message", "end"], events[-3:]
    assert done["content"].strip() and _text(events) == done["content"]
    assert done["model"] == "local/smollm2-135m-instruct"
    assert any("local model" in notice for notice in done["notices"])
    thread = _thread(http, me, done["thread_id"])
    assert [m["role"] for m in thread["messages"]] == ["user", "assistant"]
    assert time.monotonic() - started < 170
