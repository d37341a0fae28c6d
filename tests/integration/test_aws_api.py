"""The API's Lambda functions behind API Gateway: Mangum around a router group, on the real
database and moto's Step Functions, invoked the way API Gateway's HTTP API does.

A container builds its app once: its pools, the async one included, live as long as the
container, so an invocation reuses connections instead of opening its own."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from mangum import Mangum

from loom.api.app import stop_serving
from loom.api.routes import auth, runs, workflows
from loom.db.async_database import AsyncDatabase
from loom.runtime.aws.api import Handler, build_handler
from tests.utils.aws_engine import AwsEngine, LambdaContext, aws_engine
from tests.utils.pg import PgCluster


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, cluster: PgCluster, tmp_path: Path) -> Iterator[AwsEngine]:
    with aws_engine(monkeypatch, cluster, tmp_path / "aws") as aws:
        yield aws


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The main thread's event loop, as a Lambda container has (Mangum runs on it)."""
    made = asyncio.new_event_loop()
    asyncio.set_event_loop(made)
    yield made
    asyncio.set_event_loop(None)
    made.close()


class Function:
    """One API function's container: built on first use, like ``lambda_handler_for``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *routers: APIRouter) -> None:
        self.loop = loop
        self.routers = routers
        self.handler: Handler | None = None
        self.app: FastAPI | None = None

    def __call__(
        self, method: str, path: str, *, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        if self.handler is None:
            built = build_handler(self.routers)
            assert isinstance(built, Mangum) and isinstance(built.app, FastAPI)
            self.handler, self.app = built, built.app
        headers = {"content-type": "application/json", "host": "api.example.com"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        event = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "http": {"method": method, "path": path, "sourceIp": "127.0.0.1",
                         "protocol": "HTTP/1.1", "userAgent": "test"},
                "requestId": str(uuid.uuid4()),
                "stage": "$default",
                "domainName": "api.example.com",
            },
            "body": json.dumps(body) if body is not None else None,
            "isBase64Encoded": False,
        }  # fmt: skip
        context: Any = LambdaContext("loom-api")  # the fields Powertools and Mangum read
        response = self.handler(event, context)
        return response["statusCode"], json.loads(response["body"] or "null")

    def close(self) -> None:
        if self.app is not None:
            self.loop.run_until_complete(stop_serving(self.app))
            self.app.state.db.close()

    def connections_made(self) -> int:
        """Connections the function's async pool has opened since the container started."""
        assert self.app is not None
        adb: AsyncDatabase = self.app.state.adb
        return int(adb.pool.get_stats().get("connections_num", 0))


def test_a_run_started_and_read_through_the_functions_reuses_their_connections(
    aws: AwsEngine, loop: asyncio.AbstractEventLoop
) -> None:
    import tests.utils.test_nodes  # noqa: F401 - registers ACTION.TEST

    auth_fn = Function(loop, auth.router)
    workflows_fn = Function(loop, workflows.router)
    runs_fn = Function(loop, runs.router)
    try:
        status, session = auth_fn(
            "POST",
            "/v1/auth/signup",
            body={"email": f"{uuid.uuid4().hex[:10]}@example.com",
                  "password": "correct horse battery", "workspace_name": "aws"},
        )  # fmt: skip
        assert status == 201, session
        token = session["access_token"]
        definition = {
            "nodes": [
                {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
                {"id": "work", "type": "ACTION", "subtype": "TEST", "parameters": {}},
            ],
            "edges": [{"from": "start", "to": "work"}],
        }
        status, flow = workflows_fn(
            "POST", "/v1/workflows", body={"name": "aws-api", "definition": definition}, token=token
        )
        assert status == 201, flow
        status, started = workflows_fn(
            "POST", f"/v1/workflows/{flow['id']}/runs", body={"input": {"n": 1}}, token=token
        )
        assert status == 202, started
        run_id = started["run_id"]

        ended = aws.wait_for_run(uuid.UUID(run_id))
        assert ended[-1]["status"] == "SUCCEEDED"
        status, run = runs_fn("GET", f"/v1/runs/{run_id}", token=token)
        assert status == 200, run
        assert run["status"] == "SUCCESS"
        assert {n["node_id"]: n["status"] for n in run["nodes"]} == {
            "start": "completed",
            "work": "completed",
        }

        warm = runs_fn.connections_made(), workflows_fn.connections_made()
        assert warm[0] >= 1
        for _ in range(5):
            assert runs_fn("GET", f"/v1/runs/{run_id}", token=token)[0] == 200
            assert workflows_fn("GET", f"/v1/workflows/{flow['id']}", token=token)[0] == 200
        assert runs_fn("GET", f"/v1/runs/{uuid.uuid4()}", token=token)[0] == 404
        assert runs_fn("GET", f"/v1/runs/{run_id}")[0] == 401
        now = runs_fn.connections_made(), workflows_fn.connections_made()
        assert now == warm, "invocations opened connections of their own"
    finally:
        for function in (auth_fn, workflows_fn, runs_fn):
            function.close()
