"""AI_AGENT over the real API, engine and gateway, against the scripted provider on
127.0.0.1: a tool loop with two tools, JSON output with one repair, the step limit, big
tool results, a workflow as a tool, an MCP server's tools, conversation and vector memory,
and usage recorded per node run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

from loom.db import Database
from tests.utils.api import ApiServer, Session, allow_hosts, create_credential, signup
from tests.utils.engine import example
from tests.utils.fake_llm import FakeLlm, Request, chat, embeddings, provider_host, provider_key
from tests.utils.loopback_http import LoopbackServer, Reply, Seen, serve

MODEL = "agent-model"
KEY = "sk-agent-test-4c1f9e"


@pytest.fixture
def lookup() -> Iterator[LoopbackServer]:
    def answer(seen: Seen) -> Reply:
        if seen.path.startswith("/big"):
            return Reply(200, json.dumps({"blob": "x" * 5_000_000}).encode())
        found = {"q": seen.query.get("q", [""])[0], "answer": "forty-two"}
        return Reply(200, json.dumps(found).encode(), {"Content-Type": "application/json"})

    with serve(answer) as server:
        yield server


@pytest.fixture
def me(http: httpx.Client, fake: FakeLlm, lookup: LoopbackServer) -> Session:
    """A workspace that may reach the scripted provider and the lookup server."""
    owner = signup(http)
    allow_hosts(http, owner, provider_host(fake), lookup.where)
    return owner


@pytest.fixture
def key(http: httpx.Client, me: Session, fake: FakeLlm) -> str:
    return provider_key(http, me, fake, KEY)


def _agent(key: str, **parameters: Any) -> dict[str, Any]:
    return {
        "id": "agent",
        "type": "AI_AGENT",
        "subtype": "AGENT",
        "parameters": {
            "model": f"openai/{MODEL}",
            "credential_id": key,
            "prompt": "Question: {% $input.question %}",
            **parameters,
        },
    }


def _flow(agent: dict[str, Any], *attachments: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "agent",
        "nodes": [{"id": "start", "type": "TRIGGER", "subtype": "MANUAL"}, agent, *attachments],
        "edges": [
            {"from": "start", "to": "agent"},
            *({"from": a["id"], "to": "agent", "port": a["type"].lower()} for a in attachments),
        ],
    }


def _run(http: httpx.Client, me: Session, definition: dict[str, Any], question: str = "?") -> Any:
    saved = http.post(
        "/v1/workflows", headers=me.headers, json={"name": uuid4().hex, "definition": definition}
    )
    assert saved.status_code == 201, saved.text
    run_id = http.post(
        f"/v1/workflows/{saved.json()['id']}/runs",
        headers=me.headers,
        json={"input": {"question": question}},
    ).json()["run_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, Any] = http.get(f"/v1/runs/{run_id}", headers=me.headers).json()
        if run["status"] in ("SUCCESS", "ERROR"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def _agent_node(run: dict[str, Any]) -> dict[str, Any]:
    return next(n for n in run["nodes"] if n["node_id"] == "agent")


def _tool_messages(request: Request) -> list[dict[str, Any]]:
    return [m for m in request.body["messages"] if m["role"] == "tool"]


def test_a_tool_loop_with_two_tools(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, lookup: LoopbackServer
) -> None:
    fake.script(
        MODEL,
        chat(None, tool_calls=[("add", {"a": 2, "b": 3}), ("lookup", {"q": "life"})]),
        chat("The sum is 5 and the answer is forty-two."),
    )
    add = {
        "id": "add",
        "type": "TOOL",
        "subtype": "CODE",
        "parameters": {
            "name": "add",
            "description": "Add two numbers.",
            "input_schema": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
            "code": "def main(inputs):\n    return inputs['input']['a'] + inputs['input']['b']\n",
        },
    }
    search = {
        "id": "lookup",
        "type": "TOOL",
        "subtype": "HTTP_REQUEST",
        "parameters": {
            "name": "lookup",
            "description": "Look something up.",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            "request": {"url": lookup.url("/find"), "query": {"q": "{% $args.q %}"}},
        },
    }
    run = _run(http, me, _flow(_agent(key, system="Be brief."), add, search), "what?")
    assert run["status"] == "SUCCESS", run
    output = _agent_node(run)["output"]
    assert output["text"] == "The sum is 5 and the answer is forty-two."
    assert [(c["tool"], c.get("ok")) for c in output["tool_calls"]] == [
        ("add", True),
        ("lookup", True),
    ]
    assert output["usage"]["steps"] == 2 and output["usage"]["tokens_in"] == 20
    first, second = fake.requests
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert [t["function"]["name"] for t in first.body["tools"]] == ["add", "lookup"]
    assert first.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert first.body["messages"][1] == {"role": "user", "content": "Question: what?"}
    results = [m["content"] for m in _tool_messages(second)]
    assert results[0] == "5"
    assert json.loads(results[1])["body"] == {"q": "life", "answer": "forty-two"}
    assert lookup.seen[0].query == {"q": ["life"]}


def test_tool_errors_and_bad_arguments_go_back_to_the_model(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, lookup: LoopbackServer
) -> None:
    fake.script(
        MODEL,
        chat(None, tool_calls=[("lookup", {"q": 7}), ("nope", {}), ("big", {})]),
        chat("I could not find it."),
    )
    typed = {
        "id": "lookup",
        "type": "TOOL",
        "subtype": "HTTP_REQUEST",
        "parameters": {
            "name": "lookup",
            "description": "Look something up.",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            "request": {"url": lookup.url("/find")},
        },
    }
    big = {
        "id": "big",
        "type": "TOOL",
        "subtype": "HTTP_REQUEST",
        "parameters": {
            "name": "big",
            "description": "5 MB.",
            "request": {"url": lookup.url("/big")},
        },
    }
    run = _run(http, me, _flow(_agent(key), typed, big))
    assert run["status"] == "SUCCESS", run
    calls = _agent_node(run)["output"]["tool_calls"]
    assert "do not match its input_schema" in calls[0]["error"]
    assert calls[1]["error"] == "unknown tool"
    assert calls[2]["ok"] and calls[2]["truncated_from"] > 5_000_000
    results = _tool_messages(fake.requests[1])
    assert "is not of type 'string'" in results[0]["content"]
    assert "no tool named nope" in results[1]["content"]
    assert len(results[2]["content"]) < 16_100 and results[2]["content"].endswith("characters cut]")
    assert len(lookup.seen) == 1, "a call with invalid arguments never reaches the tool"


def test_json_output_is_repaired_once_then_fails_clearly(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm
) -> None:
    schema = {
        "type": "object",
        "properties": {"urgency": {"enum": ["low", "high"]}},
        "required": ["urgency"],
    }
    output = {"type": "json", "json_schema": schema}
    fake.script(MODEL, chat('{"urgency": "soon"}'), chat('```json\n{"urgency": "high"}\n```'))
    run = _run(http, me, _flow(_agent(key, output=output)))
    assert run["status"] == "SUCCESS", run
    assert _agent_node(run)["output"]["data"] == {"urgency": "high"}
    first, repair = fake.requests
    assert first.body["response_format"]["json_schema"]["schema"] == schema
    assert "not valid: urgency" in repair.body["messages"][-1]["content"]

    fake.script(MODEL, chat("nope"), chat("still nope"))
    failed = _run(http, me, _flow(_agent(key, output=output)))
    assert failed["status"] == "ERROR"
    error = _agent_node(failed)["error"]
    assert error["code"] == "agent_failed" and "even after one repair" in error["message"]


def test_a_tool_loop_that_never_ends_stops_at_max_steps(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm
) -> None:
    fake.always(MODEL, chat(None, tool_calls=[("noop", {})]))
    noop = {
        "id": "noop",
        "type": "TOOL",
        "subtype": "CODE",
        "parameters": {
            "name": "noop",
            "description": "Nothing.",
            "code": "def main(i):\n    return 1\n",
        },
    }
    run = _run(http, me, _flow(_agent(key, max_steps=3), noop))
    assert run["status"] == "ERROR"
    assert "did not finish within 3 model calls" in _agent_node(run)["error"]["message"]
    assert fake.calls(MODEL) == 3


def test_a_workflow_as_a_tool(http: httpx.Client, me: Session, key: str, fake: FakeLlm) -> None:
    helper = http.post(
        "/v1/workflows",
        headers=me.headers,
        json={"name": "shape", "definition": example("transform")},
    ).json()["id"]
    arguments = {"customer": {"name": "ada"}, "lines": [{"price": 2, "qty": 3}]}
    fake.script(MODEL, chat(None, tool_calls=[("quote", arguments)]), chat("Quoted."))
    tool = {
        "id": "quote",
        "type": "TOOL",
        "subtype": "WORKFLOW",
        "parameters": {"name": "quote", "description": "Price an order.", "workflow_id": helper},
    }
    run = _run(http, me, _flow(_agent(key), tool))
    assert run["status"] == "SUCCESS", run
    result = json.loads(_tool_messages(fake.requests[1])[0]["content"])
    assert (result["customer"], result["items"], result["total"]) == ("ADA", 1, 6)
    runs = http.get(f"/v1/runs?workflow_id={helper}", headers=me.headers).json()["items"]
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS"


def test_an_mcp_servers_tools(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, engine_api: ApiServer
) -> None:
    api_key = http.post(
        "/v1/api-keys",
        headers=me.headers,
        json={"name": "mcp", "scopes": ["workflows:read", "runs:read"]},
    ).json()["key"]
    bearer = create_credential(http, me, "bearer_token", {"token": api_key})
    allow_hosts(http, me, provider_host(fake), engine_api.base_url.removeprefix("http://"))
    fake.script(MODEL, chat(None, tool_calls=[("loom_list_workflows", {})]), chat("Listed."))
    tool = {
        "id": "loom",
        "type": "TOOL",
        "subtype": "MCP",
        "parameters": {
            "url": f"{engine_api.base_url}/v1/mcp",
            "credential_id": bearer,
            "prefix": "loom_",
            "tools": ["list_workflows", "get_run"],
        },
    }
    run = _run(http, me, _flow(_agent(key), tool))
    assert run["status"] == "SUCCESS", run
    offered = sorted(t["function"]["name"] for t in fake.requests[0].body["tools"])
    assert offered == ["loom_get_run", "loom_list_workflows"]
    listed = _tool_messages(fake.requests[1])[0]["content"]
    assert run["workflow_id"] in listed, "the workspace's workflows were listed"


def test_an_mcp_server_on_a_host_not_allowlisted_is_refused(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, engine_api: ApiServer
) -> None:
    tool = {
        "id": "loom",
        "type": "TOOL",
        "subtype": "MCP",
        "parameters": {"url": f"{engine_api.base_url}/v1/mcp"},
    }
    run = _run(http, me, _flow(_agent(key), tool))
    assert run["status"] == "ERROR"
    assert "loopback" in _agent_node(run)["error"]["message"]
    assert fake.calls() == 0


def test_stdio_mcp_servers_are_refused_at_save(http: httpx.Client, me: Session, key: str) -> None:
    tool = {"id": "t", "type": "TOOL", "subtype": "MCP", "parameters": {"url": "stdio://npx x"}}
    refused = http.post(
        "/v1/workflows",
        headers=me.headers,
        json={"name": "bad", "definition": _flow(_agent(key), tool)},
    )
    assert refused.status_code == 422 and "stdio servers are refused" in refused.text


def test_conversation_memory_across_runs_and_its_summary(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm
) -> None:
    memory = {
        "id": "chat",
        "type": "MEMORY",
        "subtype": "CONVERSATION",
        "parameters": {
            "key": "ticket-{% $input.question %}",
            "recent_turns": 2,
            "summarize_over_tokens": 200,
        },
    }
    flow = _flow(_agent(key, prompt="{% $input.question %} " + "detail " * 60), memory)
    fake.script(MODEL, chat("first answer"))
    assert _run(http, me, flow, "42")["status"] == "SUCCESS"
    fake.script(MODEL, chat("second answer"), chat("They asked twice about 42."))
    assert _run(http, me, flow, "42")["status"] == "SUCCESS"
    second = fake.requests[1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == "first answer", "the earlier run's turns are remembered"
    assert "running summary" in fake.requests[2].body["messages"][0]["content"]
    fake.script(MODEL, chat("third answer"), chat("Asked three times about 42."))
    third_run = _run(http, me, flow, "42")
    assert third_run["status"] == "SUCCESS", _agent_node(third_run)["error"]
    third = fake.requests[3].body["messages"]
    assert third[0] == {
        "role": "system",
        "content": "Summary of the conversation so far: They asked twice about 42.",
    }
    assert [m["content"] for m in third[1:3]] == [second[2]["content"], "second answer"]
    assert "They asked twice" in fake.requests[4].body["messages"][1]["content"], (
        "the new summary folds in the old one"
    )
    fake.script(MODEL, chat("other"))
    assert _run(http, me, flow, "7")["status"] == "SUCCESS"
    assert [m["role"] for m in fake.requests[5].body["messages"]] == ["user"], "keys stay apart"


def test_vector_memory_as_tools(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    fake.always("embedder", embeddings(384))
    memory = {
        "id": "facts",
        "type": "MEMORY",
        "subtype": "VECTOR",
        "parameters": {"collection": "facts", "embedding_model": "openai/embedder"},
    }
    fake.script(
        MODEL,
        chat(None, tool_calls=[("remember_facts", {"text": "Ada prefers email."})]),
        chat(None, tool_calls=[("search_facts", {"query": "how to reach Ada"})]),
        chat("Email her."),
    )
    run = _run(http, me, _flow(_agent(key), memory))
    assert run["status"] == "SUCCESS", run
    found = json.loads(_tool_messages(fake.requests[-1])[-1]["content"])
    assert [f["content"] for f in found] == ["Ada prefers email."]
    assert found[0]["score"] == pytest.approx(1.0)
    with database.tenant(me.workspace_id) as conn:
        stored = conn.execute("SELECT count(*) AS n FROM memory_vectors").fetchone()
    assert stored is not None and stored["n"] == 1


def test_usage_is_recorded_per_node_run(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, database: Database
) -> None:
    fake.script(MODEL, chat("ok", tokens_in=123, tokens_out=45))
    run = _run(http, me, _flow(_agent(key)))
    node = _agent_node(run)
    with database.tenant(me.workspace_id) as conn:
        rows = conn.execute(
            "SELECT model, tokens_in, tokens_out, run_id, node_run_id FROM llm_usage "
            "WHERE run_id = %s",
            (run["id"],),
        ).fetchall()
    assert [(r["tokens_in"], r["tokens_out"], str(r["node_run_id"])) for r in rows] == [
        (123, 45, node["id"])
    ]
    assert node["output"]["usage"]["tokens_in"] == 123


def test_memory_is_kept_per_workspace(
    http: httpx.Client, me: Session, key: str, fake: FakeLlm, lookup: LoopbackServer
) -> None:
    memory = {
        "id": "chat",
        "type": "MEMORY",
        "subtype": "CONVERSATION",
        "parameters": {"key": "shared-key"},
    }
    fake.script(MODEL, chat("secret of workspace A"))
    assert _run(http, me, _flow(_agent(key), memory))["status"] == "SUCCESS"

    other = signup(http)
    allow_hosts(http, other, provider_host(fake))
    their_key = provider_key(http, other, fake, KEY)
    fake.script(MODEL, chat("hello B"))
    assert _run(http, other, _flow(_agent(their_key), memory))["status"] == "SUCCESS"
    seen_by_b = fake.requests[-1].body["messages"]
    assert [m["role"] for m in seen_by_b] == ["user"], "B does not see A's conversation"
