"""``/v1/mcp``: an MCP server (streamable HTTP, the official SDK) for agents outside Loom.

Tools: ``list_workflows``, ``run_workflow``, ``get_run``. Only API keys may call it, and
each tool requires its scope. The endpoint authenticates the key before the MCP transport
sees the request and hands the principal to the tools through the request's state. The
server is stateless with JSON responses, so any instance (or Lambda) can answer any call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from loom import __version__
from loom.api.errors import error_body
from loom.auth.principal import Principal, Role, Unauthorized
from loom.config import Settings
from loom.db import Database
from loom.engine import service as runs
from loom.engine.dispatch import RunDispatcher
from loom.errors import InvalidInput, LoomError, NotImplementedYet
from loom.workflows import service as workflows

_STATE_KEY = "loom_principal"
P = ParamSpec("P")
T = TypeVar("T")


def _new_server() -> MCPServer[Any]:
    """The SDK's constructor calls ``logging.basicConfig`` (a Rich handler at INFO on the
    root logger) whenever the root has no handler yet; a library must not configure the
    process's logging, so a placeholder handler makes that call a no-op."""
    root = logging.getLogger()
    placeholder = None if root.handlers else logging.NullHandler()
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        return MCPServer(
            "loom",
            version=__version__,
            instructions="Run Loom workflows: list them, start a run, then poll get_run until "
            "it ends.",
        )
    finally:
        if placeholder is not None:
            root.removeHandler(placeholder)


server = _new_server()


def _caller(ctx: Context) -> tuple[Principal, Database, Settings, RunDispatcher | None]:
    request: Request = ctx.request_context.request  # type: ignore[assignment]
    app = request.app
    return request.state.loom_principal, app.state.db, app.state.settings, app.state.dispatcher


def _reported(tool: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Loom's errors reach the agent as tool errors with the message and the solution (the
    SDK hides any other exception's text)."""

    @functools.wraps(tool)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await tool(*args, **kwargs)
        except LoomError as exc:
            raise ToolError(exc.one_line()) from None

    return call


def _uuid(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not a UUID.", solution="Pass the id.") from None


@server.tool(description="List the workflows of the API key's workspace.")
@_reported
async def list_workflows(ctx: Context, limit: int = 50) -> list[dict[str, Any]]:
    principal, db, _, _ = _caller(ctx)
    principal.require(role=Role.VIEWER, scope="workflows:read")
    rows = await asyncio.to_thread(
        workflows.list_workflows,
        db,
        principal.workspace_id,
        limit=min(max(limit, 1), 200),
        offset=0,
    )
    return [
        {
            "id": str(r["id"]),
            "name": r["name"],
            "description": r["description"],
            "live_version": r["live_version"],
        }
        for r in rows
    ]


@server.tool(description="Start a run of a workflow with an input; returns its run id.")
@_reported
async def run_workflow(ctx: Context, workflow_id: str, input: Any = None) -> dict[str, Any]:
    principal, db, settings, dispatcher = _caller(ctx)
    principal.require(role=Role.EDITOR, scope="runs:write")
    if dispatcher is None:
        raise NotImplementedYet(
            "This API has no engine to run workflows.",
            solution="Run `loom up`, which hosts the local engine.",
        )
    started = await asyncio.to_thread(
        runs.start_run,
        db,
        principal.workspace_id,
        _uuid(workflow_id, "workflow_id"),
        input,
        trigger={"type": "manual", "via": "mcp"},
        max_input_bytes=settings.max_input_bytes,
    )
    dispatcher.submit(principal.workspace_id, started.run_id)
    return {"run_id": str(started.run_id), "status": started.status.value}


@server.tool(description="A run's status, output or error, and its nodes' statuses.")
@_reported
async def get_run(ctx: Context, run_id: str) -> dict[str, Any]:
    principal, db, _, _ = _caller(ctx)
    principal.require(role=Role.VIEWER, scope="runs:read")
    detail = await asyncio.to_thread(
        runs.get_run, db, principal.workspace_id, _uuid(run_id, "run_id")
    )
    run = detail.run
    return {
        "run_id": str(run["id"]),
        "status": run["status"],
        "output": run["output"],
        "error": run["error"],
        "nodes": {n["node_id"]: n["status"] for n in detail.nodes},
    }


class _Endpoint:
    """Authenticates the API key, then hands the request to this app's MCP transport.
    (An object, not a function: Starlette then passes the raw ASGI call through.)"""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from loom.auth.authenticate import authenticate_request

        request = Request(scope, receive)
        app = request.app
        try:
            principal = await authenticate_request(
                request, app.state.db, app.state.adb, app.state.settings
            )
            if principal.kind != "api_key":
                raise Unauthorized(
                    "The MCP endpoint accepts API keys only.",
                    solution="Create an API key and send it as a bearer token.",
                )
        except LoomError as exc:
            response = JSONResponse(error_body(exc.code, exc.message, exc.solution), exc.status)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[_STATE_KEY] = principal
        sessions: StreamableHTTPSessionManager = app.state.mcp_sessions
        await sessions.handle_request(scope, receive, send)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One session manager per app: it can run only once.
    app.state.mcp_sessions = StreamableHTTPSessionManager(
        app=server._lowlevel_server,
        json_response=True,
        stateless=True,
        # Every caller must present an API key, so a rebound browser page has nothing to
        # ride on; Host checks would only break API Gateway and custom domains.
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    async with app.state.mcp_sessions.run():
        yield


router = APIRouter(tags=["mcp"], lifespan=_lifespan)
router.routes.append(Route("/v1/mcp", endpoint=_Endpoint(), methods=["GET", "POST", "DELETE"]))
