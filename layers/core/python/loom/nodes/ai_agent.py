"""AI_AGENT.AGENT: a model call through the LLM gateway, with attached tools and memory.

The node sends its system and user prompts (expressions evaluated), lets the model call
the attached tools for up to ``max_steps`` rounds, and returns the answer: text, or JSON
validated against a schema with one repair attempt. Tool errors and invalid arguments go
back to the model as the tool's result, so it can correct itself; a tool result is cut to
``MAX_TOOL_RESULT_CHARS``. Cost and tokens are the gateway's (it records every call).
"""

from __future__ import annotations

import json
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator, SchemaError
from pydantic import Field, field_validator

from loom.errors import LoomError
from loom.llm.calls import CallContext, Completion, ToolCall
from loom.nodes.agent_memory import (
    Conversation,
    open_conversation,
    record_exchange,
    summary_prompt,
    vector_tools,
)
from loom.nodes.agent_tools import Tool, loom_tool
from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel, Turn
from loom.nodes.registry import register
from loom.workflows.definition import NodeType

MAX_TOOL_RESULT_CHARS = 16_000
# The node's own timeout bounds the whole loop; each model call gets less, so the gateway
# fails clearly first.
CALL_SHARE_OF_TIMEOUT = 0.8


class AgentFailed(LoomError):
    code = "agent_failed"
    retryable = False


class TextOutput(ParametersModel):
    type: Literal["text"] = "text"


class JsonOutput(ParametersModel):
    type: Literal["json"]
    json_schema: dict[str, Any] = Field(description="JSON Schema the answer must match.")

    @field_validator("json_schema")
    @classmethod
    def _valid(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"json_schema is not a valid JSON Schema: {exc.message}") from None
        return schema


class AgentParameters(ParametersModel):
    model: str = Field(
        min_length=3,
        max_length=200,
        description="provider/model as litellm names it (openai/gpt-4o-mini, "
        "anthropic/claude-3-5-haiku-latest), or local/smollm2-135m-instruct offline.",
    )
    fallbacks: list[str] = Field(default_factory=list, max_length=5)
    credential_id: str | None = Field(
        default=None, description="An llm_api_key credential; unset: the platform's key."
    )
    system: str = Field(default="", max_length=50_000)
    prompt: str = Field(min_length=1, max_length=200_000, description="The user message.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=64_000)
    output: Annotated[TextOutput | JsonOutput, Field(discriminator="type")] = Field(
        default_factory=TextOutput
    )
    max_steps: int = Field(
        default=8, ge=1, le=50, description="Model calls at most, tool rounds included."
    )
    budget_usd: float | None = Field(
        default=None, gt=0, description="What this run may spend on models, all calls."
    )


@dataclass
class _Loop:
    """What the agent did, for the output and the metadata."""

    steps: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    models: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def count(self, completion: Completion) -> None:
        self.steps += 1
        self.tokens_in += completion.tokens_in
        self.tokens_out += completion.tokens_out
        self.cost_usd += completion.cost_usd
        self.models.append(completion.model)
        self.warnings += completion.warnings
        if completion.notice and completion.notice not in self.notices:
            self.notices.append(completion.notice)

    def usage(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": round(self.cost_usd, 8),
        }


class _Agent:
    def __init__(self, ctx: NodeContext, params: AgentParameters) -> None:
        if ctx.llm is None:
            raise AgentFailed(
                "This engine has no LLM gateway.", solution="Run on `loom up` or on AWS."
            )
        self.ctx = ctx
        self.params = params
        self.llm = ctx.llm
        self.loop = _Loop()
        self.call = CallContext(
            workspace_id=ctx.workspace_id,
            run_id=ctx.run_id,
            node_run_id=ctx.node_run_id,
            run_budget_usd=params.budget_usd,
        )
        self.deadline = (
            time.monotonic() + ctx.timeout_seconds if ctx.timeout_seconds is not None else None
        )

    def _call(self) -> CallContext:
        """The call's context; with a node timeout, a deadline inside what is left of it."""
        if self.deadline is None:
            return self.call
        left = max(self.deadline - time.monotonic(), 0.001)
        return replace(self.call, deadline_seconds=left * CALL_SHARE_OF_TIMEOUT)

    async def complete(
        self, messages: list[dict[str, Any]], tools: list[Tool] | None, *, json_mode: bool
    ) -> Completion:
        output = self.params.output
        response_format = None
        if json_mode and isinstance(output, JsonOutput):
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": output.json_schema},
            }
        completion = await self.llm.complete(
            self._call(),
            model=self.params.model,
            messages=messages,
            tools=[t.definition() for t in tools] if tools else None,
            response_format=response_format,
            temperature=self.params.temperature,
            max_tokens=self.params.max_tokens,
            fallbacks=self.params.fallbacks,
            credential_id=self.params.credential_id,
        )
        self.loop.count(completion)
        return completion

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        return await self.llm.embed(self._call(), model=model, inputs=texts)

    async def run(self) -> NodeResult:
        try:
            async with AsyncExitStack() as stack:
                tools, conversation = await self._attachments(stack)
                messages = self._opening(conversation)
                answer = await self._tool_loop(messages, tools)
                value = await self._shaped(messages, answer)
        except BaseExceptionGroup as group:
            # An open MCP session's task group wraps whatever ends the loop.
            raise _first_cause(group) from None
        if conversation is not None:
            await record_exchange(
                self.ctx, conversation, self.params.prompt, answer.text, self._summarize
            )
        return self._result(value)

    async def _attachments(self, stack: AsyncExitStack) -> tuple[list[Tool], Conversation | None]:
        tools: list[Tool] = []
        conversation: Conversation | None = None
        for node in self.ctx.attached:
            if node.type is NodeType.TOOL and node.subtype == "MCP":
                # The MCP SDK takes seconds to import: only agents that use it pay.
                from loom.nodes.agent_mcp import mcp_tools

                tools += await mcp_tools(self.ctx, node, stack)
            elif node.type is NodeType.TOOL:
                tools.append(loom_tool(self.ctx, node))
            elif node.subtype == "CONVERSATION":
                if conversation is not None:
                    raise AgentFailed(
                        f"Agent '{self.ctx.node_id}' has two conversation memories.",
                        solution="Attach one MEMORY.CONVERSATION node per agent.",
                    )
                conversation = await open_conversation(self.ctx, node)
            else:
                tools += vector_tools(self.ctx, node, self.embed)
        names = [t.name for t in tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise AgentFailed(
                f"Agent '{self.ctx.node_id}' has tools with the same name: "
                f"{', '.join(duplicates)}.",
                solution="Rename them, or give MCP tools a prefix.",
            )
        return tools, conversation

    def _opening(self, conversation: Conversation | None) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.params.system:
            messages.append({"role": "system", "content": self.params.system})
        if conversation is not None:
            messages += conversation.messages()
        messages.append({"role": "user", "content": self.params.prompt})
        return messages

    async def _tool_loop(self, messages: list[dict[str, Any]], tools: list[Tool]) -> Completion:
        by_name = {t.name: t for t in tools}
        json_mode = not tools
        for _ in range(self.params.max_steps):
            completion = await self.complete(messages, tools, json_mode=json_mode)
            if not completion.tool_calls:
                return completion
            messages.append(_assistant(completion))
            for call in completion.tool_calls:
                result = await self._use(by_name, call)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        raise AgentFailed(
            f"The agent did not finish within {self.params.max_steps} model calls "
            f"({len(self.loop.calls)} tool calls).",
            solution="Raise max_steps, or make the task or the tools simpler.",
        )

    async def _use(self, tools: dict[str, Tool], call: ToolCall) -> str:
        record: dict[str, Any] = {"tool": call.name, "arguments": call.arguments}
        self.loop.calls.append(record)
        tool = tools.get(call.name)
        if tool is None:
            record["error"] = "unknown tool"
            return _error(f"There is no tool named {call.name}; use one of: {', '.join(tools)}.")
        if call.invalid_arguments is not None:
            record["error"] = "arguments were not a JSON object"
            return _error("The arguments were not a JSON object; call the tool again.")
        try:
            value = await tool.run(call.arguments)
        except LoomError as exc:
            record["error"] = exc.message
            return _error(f"{exc.message} {exc.solution}".strip())
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        record["ok"] = True
        if len(text) > MAX_TOOL_RESULT_CHARS:
            record["truncated_from"] = len(text)
            cut = len(text) - MAX_TOOL_RESULT_CHARS
            text = text[:MAX_TOOL_RESULT_CHARS] + f"\n[... {cut} more characters cut]"
        return text

    async def _shaped(self, messages: list[dict[str, Any]], answer: Completion) -> Any:
        output = self.params.output
        if not isinstance(output, JsonOutput):
            return answer.text
        value, problem = _parsed(answer.text, output.json_schema)
        if problem is None:
            return value
        messages.append({"role": "assistant", "content": answer.text})
        messages.append(
            {
                "role": "user",
                "content": f"That answer is not valid: {problem}. Reply with only a JSON value "
                f"that matches this JSON Schema: {json.dumps(output.json_schema)}",
            }
        )
        repaired = await self.complete(messages, None, json_mode=True)
        value, problem = _parsed(repaired.text, output.json_schema)
        if problem is not None:
            raise AgentFailed(
                f"The model's answer did not match the output schema, even after one repair: "
                f"{problem}.",
                solution="Simplify the schema, describe it in the prompt, or use a stronger model.",
            )
        return value

    async def _summarize(self, summary: str | None, turns: list[Turn]) -> str:
        completion = await self.complete(summary_prompt(summary, turns), None, json_mode=False)
        return completion.text.strip()

    def _result(self, value: Any) -> NodeResult:
        output: dict[str, Any] = {
            "model": self.loop.models[-1] if self.loop.models else self.params.model,
            "usage": self.loop.usage(),
            "tool_calls": self.loop.calls,
        }
        output["data" if isinstance(self.params.output, JsonOutput) else "text"] = value
        metadata: dict[str, Any] = {}
        if self.loop.warnings:
            metadata["warnings"] = list(dict.fromkeys(self.loop.warnings))
        if self.loop.notices:
            metadata["notices"] = self.loop.notices
        return NodeResult(output=output, metadata=metadata)


def _first_cause(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first Loom error inside (nested) exception groups, else the group itself."""
    for inner in group.exceptions:
        if isinstance(inner, LoomError):
            return inner
        if isinstance(inner, BaseExceptionGroup):
            found = _first_cause(inner)
            if found is not inner:
                return found
    return group


def _assistant(completion: Completion) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": completion.text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.invalid_arguments or json.dumps(call.arguments),
                },
            }
            for call in completion.tool_calls
        ],
    }


def _error(message: str) -> str:
    return json.dumps({"error": message})


def _parsed(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    try:
        value = json.loads(_unfenced(text))
    except json.JSONDecodeError as exc:
        return None, f"it is not JSON ({exc.msg} at character {exc.pos})"
    errors = list(Draft202012Validator(schema).iter_errors(value))
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path) or "the answer"
        return None, f"{where}: {errors[0].message}"
    return value, None


def _unfenced(text: str) -> str:
    """Small models wrap JSON in a Markdown fence despite being asked not to."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return stripped.strip()


async def execute(ctx: NodeContext, params: AgentParameters, inputs: Any) -> NodeResult:
    return await _Agent(ctx, params).run()


SPEC = register(
    NodeSpec(
        type=NodeType.AI_AGENT,
        subtype="AGENT",
        description="Ask a model through the LLM gateway, with attached TOOL and MEMORY nodes; "
        "the answer is text or JSON matching a schema.",
        parameters=AgentParameters,
        execute=execute,
        inputs=("main", "tool", "memory"),
        side_effects=True,
    )
)
