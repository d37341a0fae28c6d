"""TOOL nodes: what an AI_AGENT node may call. They attach to an agent by an edge from the
tool (port ``tool``) to the agent, and run only when the model calls them.

HTTP_REQUEST and CODE run the Loom node of that name with parameters evaluated per call,
where ``$args`` holds the model's arguments (validated against ``input_schema`` first);
WORKFLOW runs another workflow with the arguments as its input; MCP offers the tools of a
remote MCP server (streamable HTTP only; a stdio server would be a process on this host).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from jsonschema import Draft202012Validator, SchemaError
from pydantic import Field, ValidationError, field_validator

from loom.errors import InvalidInput, LoomError
from loom.expressions import ExpressionContext, evaluate
from loom.nodes import code, http_request
from loom.nodes.base import NodeContext, NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.sandbox import Limits
from loom.workflows.definition import Node, NodeType

TOOL_PORT = "tool"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOOL_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}

Call = Callable[[dict[str, Any]], Awaitable[Any]]


class ToolFailed(LoomError):
    code = "tool_failed"
    retryable = False


class _Tool(ParametersModel):
    name: str = Field(pattern=TOOL_NAME, description="The name the model calls it by.")
    description: str = Field(
        min_length=1, max_length=2000, description="When and why to use it, for the model."
    )
    input_schema: dict[str, Any] = Field(
        default_factory=lambda: dict(EMPTY_OBJECT),
        description="JSON Schema of the arguments (an object); available as $args.",
    )

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"input_schema is not a valid JSON Schema: {exc.message}") from None
        if schema.get("type") != "object":
            raise ValueError("input_schema must describe an object ({'type': 'object', ...})")
        return schema


class HttpTool(_Tool):
    request: dict[str, Any] = Field(
        description="ACTION.HTTP_REQUEST parameters; expressions may use $args.",
        examples=[{"url": "https://api.example.com/search?q={% $args.q %}"}],
    )


class CodeTool(_Tool):
    code: str = Field(
        min_length=1,
        description="Python def main(inputs): ... as in ACTION.CODE; inputs is "
        "{input: the arguments, nodes: {}}.",
    )
    timeout_seconds: float = Field(default=10, gt=0, le=300)
    memory_mb: int = Field(default=256, ge=64, le=2048)


class WorkflowTool(_Tool):
    workflow_id: UUID = Field(
        description="A workflow of this workspace; the arguments are its input."
    )


class McpTool(ParametersModel):
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="An MCP server's streamable HTTP endpoint (http or https). stdio servers "
        "are refused: they would run a command on this host.",
    )
    credential_id: str | None = Field(
        default=None, description="A bearer_token credential sent as Authorization."
    )
    tools: list[str] | None = Field(
        default=None, description="Only these of the server's tools (default: all)."
    )
    prefix: str = Field(
        default="",
        pattern=r"^$|^[A-Za-z][A-Za-z0-9_]{0,20}$",
        description="Put before each tool name, to tell servers apart.",
    )

    @field_validator("url")
    @classmethod
    def _http_only(cls, url: str) -> str:
        if not re.match(r"^https?://", url, re.IGNORECASE):
            raise ValueError(
                "only streamable HTTP MCP servers (http:// or https://) are supported; stdio "
                "servers are refused because they run a command on this host"
            )
        return url


@dataclass(frozen=True)
class Tool:
    """A tool as the model sees it, and how to run it."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: Call
    # Its risk class for governed agents (``loom.agents.governance.Risk``): read, write,
    # external or spend.
    risk: str = "read"

    def definition(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def loom_tool(ctx: NodeContext, node: Node) -> Tool:
    """The tool of an attached HTTP_REQUEST, CODE or WORKFLOW node."""
    spec = _SPECS[node.subtype]
    params = spec.parameters.model_validate(node.parameters)
    assert isinstance(params, _Tool)
    validator = Draft202012Validator(params.input_schema)

    async def run(args: dict[str, Any]) -> Any:
        problems = [e.message for e in validator.iter_errors(args)]
        if problems:
            raise InvalidInput(
                f"Arguments for {params.name} do not match its input_schema: "
                + "; ".join(problems[:5]),
                solution="Call the tool again with arguments that match its schema.",
            )
        return await _RUNNERS[node.subtype](ctx, node, params, args)

    return Tool(params.name, params.description, params.input_schema, run, risk_of(params))


def risk_of(params: Any) -> str:
    """The risk class of an HTTP_REQUEST, CODE or WORKFLOW tool's parameters. CODE is
    sandboxed (no network, no files, no Loom state): read. HTTP reads only with a literal
    GET, HEAD or OPTIONS (a method given by an expression could be anything). A workflow
    may do anything: external."""
    if isinstance(params, CodeTool):
        return "read"
    if isinstance(params, HttpTool):
        method = params.request.get("method", "GET")
        return "read" if str(method).upper() in READ_METHODS else "external"
    return "external"


async def _http(ctx: NodeContext, node: Node, params: Any, args: dict[str, Any]) -> Any:
    where = f"nodes.{node.id}.parameters.request"
    raw = evaluate(params.request, expression_scope(ctx, args=args), where=where)
    try:
        request = http_request.SPEC.parameters.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ToolFailed(
            f"Tool {params.name} made an invalid request ({problems}).",
            solution="Fix the tool's request in its definition.",
        ) from None
    assert http_request.SPEC.execute is not None
    result = await http_request.SPEC.execute(ctx, request, {})
    return result.output


async def _code(ctx: NodeContext, node: Node, params: Any, args: dict[str, Any]) -> Any:
    limits = Limits(
        timeout_seconds=params.timeout_seconds, memory_bytes=params.memory_mb * code.MIB
    )
    result = await code.RUNNER.run(params.code, {"input": args, "nodes": {}}, limits)
    return result.value


async def _workflow(ctx: NodeContext, node: Node, params: Any, args: dict[str, Any]) -> Any:
    if ctx.children is None:
        raise ToolFailed(
            "This engine cannot run workflows as tools.", solution="Run on `loom up` or AWS."
        )
    key = f"{ctx.idempotency_key}:{node.id}:{json.dumps(args, sort_keys=True)}"
    return await ctx.children.run_workflow(params.workflow_id, args, key=key)


def expression_scope(ctx: NodeContext, **variables: Any) -> ExpressionContext:
    """What expressions in an attached node's parameters see: the agent's own scope."""
    return ExpressionContext(
        input=ctx.run_input, nodes=ctx.upstream, run=ctx.run, variables=variables
    )


_RUNNERS: Mapping[str, Callable[[NodeContext, Node, Any, dict[str, Any]], Awaitable[Any]]] = {
    "HTTP_REQUEST": _http,
    "CODE": _code,
    "WORKFLOW": _workflow,
}


def _spec(subtype: str, parameters: type[ParametersModel], description: str) -> NodeSpec:
    return register(
        NodeSpec(
            type=NodeType.TOOL,
            subtype=subtype,
            description=description,
            parameters=parameters,
            kind="attachment",
            inputs=(),
            outputs=(TOOL_PORT,),
            side_effects=subtype != "WORKFLOW",
        )
    )


_SPECS: dict[str, NodeSpec] = {
    "HTTP_REQUEST": _spec(
        "HTTP_REQUEST", HttpTool, "An HTTP request the agent may make, shaped by its arguments."
    ),
    "CODE": _spec("CODE", CodeTool, "Python the agent may run on its arguments, sandboxed."),
    "WORKFLOW": _spec("WORKFLOW", WorkflowTool, "Another workflow the agent may run."),
    "MCP": _spec("MCP", McpTool, "The tools of a remote MCP server (streamable HTTP)."),
}
