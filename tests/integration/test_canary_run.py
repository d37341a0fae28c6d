"""Secrets stored as credentials and used by a whole run (an HTTP call that a hostile server
echoes back, a call that fails with the token in its error, an approval sent through a
signed webhook) appear in no table but as ciphertext, in no log line and in no API reply."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest

from tests.utils.api import ApiServer, allow_hosts, create_credential, signup
from tests.utils.leaks import scan_database, spellings
from tests.utils.loopback_http import Reply, Seen, serve
from tests.utils.pg import PgCluster

TOKEN = "canary-run-token-8f3a1c5e2b"
HOOK_SECRET = "canary-run-hook-4d7e9a0c6f"


def _hostile(seen: Seen) -> Reply:
    """Echo every credential it is sent, in the body and in headers, and in errors."""
    auth = seen.headers.get("authorization", "")
    body = json.dumps({"you_sent": auth, "path": seen.path}).encode()
    status = 401 if seen.path.startswith("/deny") else 200
    headers = {"Content-Type": "application/json", "X-Echo": auth}
    return Reply(status=status, body=body, headers=headers)


def _definition(server_url: str, token_id: str, hook_id: str) -> dict[str, Any]:
    def call(path: str) -> dict[str, Any]:
        return {"url": f"{server_url}{path}", "auth": {"credential_id": token_id}}

    return {
        "name": "canary",
        "nodes": [
            {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
            {"id": "echo", "type": "ACTION", "subtype": "HTTP_REQUEST", "parameters": call("/e")},
            {
                "id": "deny",
                "type": "ACTION",
                "subtype": "HTTP_REQUEST",
                "parameters": call("/deny"),
                "on_error": "continue",
            },
            {
                "id": "ask",
                "type": "HUMAN_IN_THE_LOOP",
                "subtype": "APPROVAL",
                "parameters": {
                    "title": "Echoed: {% $nodes.echo.body.you_sent %}",
                    "channels": [
                        {
                            "type": "webhook",
                            "url": f"{server_url}/hook",
                            "secret_credential_id": hook_id,
                        }
                    ],
                },
            },
        ],
        "edges": [
            {"from": "start", "to": "echo"},
            {"from": "echo", "to": "deny"},
            {"from": "deny", "to": "ask"},
        ],
    }


def test_canaries_used_by_a_run_never_leak(
    engine_api: ApiServer, cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    replies: list[httpx.Response] = []
    with serve(_hostile) as server, httpx.Client(base_url=engine_api.base_url) as http:
        me = signup(http)
        allow_hosts(http, me, server.where)
        token_id = create_credential(http, me, "bearer_token", {"token": TOKEN})
        hook_id = create_credential(http, me, "webhook_secret", {"secret": HOOK_SECRET})
        definition = _definition(server.url("").rstrip("/"), token_id, hook_id)
        flow = http.post(
            "/v1/workflows", headers=me.headers, json={"name": "canary", "definition": definition}
        ).json()["id"]
        run_id = http.post(
            f"/v1/workflows/{flow}/runs", headers=me.headers, json={"input": {}}
        ).json()["run_id"]

        pending: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not pending and time.monotonic() < deadline:
            pending = http.get("/v1/hil?status=pending", headers=me.headers).json()
            time.sleep(0.05)
        assert pending, http.get(f"/v1/runs/{run_id}", headers=me.headers).text
        assert pending[0]["request"]["title"] == "Echoed: [redacted]"
        answered = http.post(
            f"/v1/hil/{pending[0]['id']}/respond", headers=me.headers, json={"approved": True}
        )
        assert answered.status_code == 200
        run: dict[str, Any] = {}
        while run.get("status") != "SUCCESS" and time.monotonic() < deadline:
            run = http.get(f"/v1/runs/{run_id}", headers=me.headers).json()
            time.sleep(0.05)
        assert run["status"] == "SUCCESS", run
        hooks = [s for s in server.seen if s.path == "/hook"]
        assert len(hooks) == 1 and "x-loom-signature" in hooks[0].headers
        sent = [s.headers.get("authorization") for s in server.seen if s.path != "/hook"]
        assert sent == [f"Bearer {TOKEN}"] * 2, "the credential was really used"

        nodes = {n["node_id"]: n for n in run["nodes"]}
        assert nodes["echo"]["output"]["body"]["you_sent"] == "[redacted]"
        assert nodes["deny"]["error"]["code"], "the failed call is recorded"
        for url in (
            f"/v1/runs/{run_id}",
            f"/v1/runs/{run_id}/events?after=0",
            f"/v1/runs?workflow_id={flow}",
            "/v1/hil",
            "/v1/credentials",
            f"/v1/workflows/{flow}",
        ):
            replies.append(http.get(url, headers=me.headers))

    assert all(r.status_code == 200 for r in replies)
    for secret in (TOKEN, HOOK_SECRET):
        for reply in replies:
            assert not any(s in reply.text for s in spellings(secret)), reply.url
            assert not any(secret in v for v in reply.headers.values())
        assert scan_database(cluster, spellings(secret)) == []
        assert secret not in caplog.text
        assert not any(secret in str(record.__dict__) for record in caplog.records)
