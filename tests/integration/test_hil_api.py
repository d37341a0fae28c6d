"""/v1/hil: a waiting node's request is listed, answered once, and the run carries on."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from psycopg.types.json import Jsonb

import tests.utils.test_nodes  # noqa: F401 - registers ACTION.TEST in this process
from loom.db import Database
from tests.utils.api import ApiServer, Session, signup


def _run_status(http: httpx.Client, me: Session, run_id: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run: dict[str, Any] = http.get(f"/v1/runs/{run_id}", headers=me.headers).json()
        if run["status"] == want:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {want}")


def _waiting_request(http: httpx.Client, me: Session, database: Database) -> tuple[str, str]:
    """A run whose node waits for a person, and the request the HIL node would file."""
    definition = {
        "name": "ask a person",
        "nodes": [
            {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
            {
                "id": "ask",
                "type": "ACTION",
                "subtype": "TEST",
                "parameters": {"suspend_token": uuid.uuid4().hex},
            },
            {"id": "after", "type": "ACTION", "subtype": "TEST"},
        ],
        "edges": [{"from": "start", "to": "ask"}, {"from": "ask", "to": "after"}],
    }
    flow = http.post(
        "/v1/workflows", headers=me.headers, json={"name": "ask", "definition": definition}
    ).json()["id"]
    run_id = http.post(f"/v1/workflows/{flow}/runs", headers=me.headers, json={"input": {}}).json()[
        "run_id"
    ]
    run = _run_status(http, me, run_id, "WAITING_FOR_HUMAN")
    ask = next(n for n in run["nodes"] if n["node_id"] == "ask")
    with database.tenant(me.workspace_id) as conn:
        row = conn.execute(
            "INSERT INTO hil_requests (workspace_id, run_id, node_run_id, kind, request, "
            "expires_at) VALUES (%s, %s, %s, 'input', %s, %s) RETURNING id",
            (
                me.workspace_id,
                run_id,
                ask["id"],
                Jsonb({"question": "how many?"}),
                datetime.now(UTC) + timedelta(hours=1),
            ),
        ).fetchone()
    assert row is not None
    return run_id, str(row["id"])


def test_answer_once_and_the_run_carries_on(engine_api: ApiServer, database: Database) -> None:
    with httpx.Client(base_url=engine_api.base_url, timeout=30) as http:
        me = signup(http)
        run_id, request_id = _waiting_request(http, me, database)
        pending = http.get("/v1/hil?status=pending", headers=me.headers).json()
        assert [(r["id"], r["node_id"], r["request"]) for r in pending] == [
            (request_id, "ask", {"question": "how many?"})
        ]
        answered = http.post(
            f"/v1/hil/{request_id}/respond", headers=me.headers, json={"data": {"n": 3}}
        )
        assert answered.status_code == 200 and answered.json()["status"] == "responded"
        run = _run_status(http, me, run_id, "SUCCESS")
        assert run["output"] == {"n": 3}, "an input request's answer is the node's output"
        again = http.post(
            f"/v1/hil/{request_id}/respond", headers=me.headers, json={"data": {"n": 9}}
        )
        assert again.status_code == 409
        listed = http.get("/v1/hil", headers=me.headers).json()
        assert listed[0]["response"] == {"n": 3}, "the first answer stands"


def test_another_workspace_cannot_see_or_answer(engine_api: ApiServer, database: Database) -> None:
    with httpx.Client(base_url=engine_api.base_url, timeout=30) as http:
        me = signup(http)
        _, request_id = _waiting_request(http, me, database)
        stranger = signup(http)
        assert http.get("/v1/hil", headers=stranger.headers).json() == []
        refused = http.post(
            f"/v1/hil/{request_id}/respond", headers=stranger.headers, json={"data": 1}
        )
        assert refused.status_code == 404
        mine = http.get("/v1/hil?status=pending", headers=me.headers).json()
        assert [r["id"] for r in mine] == [request_id]
