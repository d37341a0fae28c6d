"""/v1/mcp with the official MCP client: API keys only, each tool behind its scope."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.utils.api import ApiServer, Session, signup
from tests.utils.engine import example


def _key(http: httpx.Client, owner: Session, scopes: list[str]) -> str:
    created = http.post(
        "/v1/api-keys", headers=owner.headers, json={"name": "agent", "scopes": scopes}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


async def _call(base_url: str, key: str, tool: str, arguments: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{base_url}/v1/mcp"
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        if tool == "":
            listed = await session.list_tools()
            return sorted(t.name for t in listed.tools)
        result = await session.call_tool(tool, arguments)
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        return {"error": result.is_error, "text": text, "data": result.structured_content}


def test_an_agent_lists_runs_and_reads_workflows(engine_api: ApiServer) -> None:
    with httpx.Client(base_url=engine_api.base_url, timeout=30) as http:
        owner = signup(http)
        flow = http.post(
            "/v1/workflows",
            headers=owner.headers,
            json={"name": "shape", "definition": example("transform")},
        ).json()["id"]
        key = _key(http, owner, ["workflows:read", "runs:write", "runs:read"])
    assert asyncio.run(_call(engine_api.base_url, key, "", {})) == [
        "get_run",
        "list_workflows",
        "run_workflow",
    ]
    listed = asyncio.run(_call(engine_api.base_url, key, "list_workflows", {}))
    assert not listed["error"] and flow in listed["text"]
    run_input = {"customer": {"name": "ada"}, "lines": [{"price": 1, "qty": 2}]}
    started = asyncio.run(
        _call(engine_api.base_url, key, "run_workflow", {"workflow_id": flow, "input": run_input})
    )
    run_id = json.loads(started["text"])["run_id"]
    deadline = time.monotonic() + 30
    while True:
        status = asyncio.run(_call(engine_api.base_url, key, "get_run", {"run_id": run_id}))
        body = json.loads(status["text"])
        if body["status"] == "SUCCESS" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert body["status"] == "SUCCESS" and body["output"]["total"] == 2


def test_a_missing_scope_is_refused_by_the_tool(engine_api: ApiServer) -> None:
    with httpx.Client(base_url=engine_api.base_url, timeout=30) as http:
        owner = signup(http)
        key = _key(http, owner, ["workflows:read"])
    refused = asyncio.run(_call(engine_api.base_url, key, "run_workflow", {"workflow_id": "x"}))
    assert refused["error"] and "runs:write" in refused["text"]


def test_users_and_strangers_are_turned_away(engine_api: ApiServer) -> None:
    with httpx.Client(base_url=engine_api.base_url, timeout=30) as http:
        owner = signup(http)
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        accept = {"Accept": "application/json, text/event-stream"}
        as_user = http.post("/v1/mcp", json=body, headers={**owner.headers, **accept})
        assert as_user.status_code == 401
        assert "API keys only" in as_user.json()["error"]["message"]
        anonymous = http.post("/v1/mcp", json=body, headers=accept)
        assert anonymous.status_code == 401
        forged = http.post(
            "/v1/mcp",
            json=body,
            headers={**accept, "Authorization": "Bearer loom_abcdefgh_" + "x" * 40},
        )
        assert forged.status_code == 401
