"""TOOL.MCP: connect to a remote MCP server over streamable HTTP with the official SDK,
discover its tools when the agent starts, and call them for the model.

The SDK's HTTP client sends through ``loom.net.httpx2_transport.CheckedTransport``, so an
MCP server is subject to the same outbound rules as any other call (internal hosts only
when the workspace allowlists them).
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from typing import Any

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from loom.net.httpx2_transport import CheckedTransport
from loom.nodes.agent_tools import EMPTY_OBJECT, McpTool, Tool, ToolFailed
from loom.nodes.base import NodeContext
from loom.nodes.external_common import allowlist_of, credential_of
from loom.secrets.types import BearerToken
from loom.workflows.definition import Node

CONNECT_SECONDS = 30.0
CALL_SECONDS = 120.0


async def mcp_tools(ctx: NodeContext, node: Node, stack: AsyncExitStack) -> list[Tool]:
    """Open a session to the node's server (closed with ``stack``) and return its tools."""
    params = McpTool.model_validate(node.parameters)
    headers: dict[str, str] = {}
    if params.credential_id:
        bearer = await credential_of(ctx, params.credential_id, BearerToken)
        headers["Authorization"] = f"Bearer {bearer.token.get_secret_value()}"
    transport = CheckedTransport(allowlist_of(ctx), via=f"MCP server of '{node.id}'")
    try:
        client = await stack.enter_async_context(
            httpx2.AsyncClient(
                transport=transport,
                headers=headers,
                timeout=httpx2.Timeout(CONNECT_SECONDS, read=CALL_SECONDS),
            )
        )
        read, write = await stack.enter_async_context(
            streamable_http_client(params.url, http_client=client)
        )
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        listed = await session.list_tools()
    except ToolFailed:
        raise
    except Exception as exc:
        raise ToolFailed(
            f"Could not reach the MCP server of '{node.id}' at {params.url}: {_reason(exc)}",
            solution="Check the URL, that the server speaks streamable HTTP, its credential, "
            "and the workspace's outbound allowlist for internal hosts.",
        ) from None
    wanted = set(params.tools) if params.tools is not None else None
    tools = []
    for offered in listed.tools:
        if wanted is not None and offered.name not in wanted:
            continue
        name = re.sub(r"[^A-Za-z0-9_-]", "_", f"{params.prefix}{offered.name}")[:64]
        tools.append(
            Tool(
                name=name,
                description=(offered.description or offered.name)[:2000],
                parameters=offered.input_schema or dict(EMPTY_OBJECT),
                run=_caller(session, offered.name),
                risk=_risk(offered),
            )
        )
    return tools


def _risk(offered: Any) -> str:
    """A tool the server marks read-only reads; any other may change the world."""
    hints = offered.annotations
    return "read" if hints is not None and hints.readOnlyHint else "external"


def _caller(session: ClientSession, name: str) -> Any:
    async def call(args: dict[str, Any]) -> Any:
        try:
            result = await session.call_tool(name, args)
        except Exception as exc:
            raise ToolFailed(
                f"MCP tool {name} failed: {_reason(exc)}", solution="See the server's logs."
            ) from None
        return _value(name, result)

    return call


def _value(name: str, result: CallToolResult) -> Any:
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    if result.is_error:
        raise ToolFailed(f"MCP tool {name} reported an error: {text[:2000]}", solution="")
    if result.structured_content is not None:
        return result.structured_content
    return text


def _reason(exc: BaseException) -> str:
    """The innermost cause of an error, anyio's exception groups unwrapped."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message)[:500]
