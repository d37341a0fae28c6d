"""AI_AGENT.AGENT: a model call through the LLM gateway, with attached tools and memory.

The node sends its system and user prompts (expressions evaluated), lets the model call
the attached tools (``loom.agents.loop``), and returns the answer: text, or JSON matching
a schema. Cost and tokens are the gateway's (it records every call).

Bound to a governed agent (``agent_id``), the node runs that agent instead: its spec gives
the model, instructions and tools, its maturity level governs every tool call (the
node's attached tools included), and the execution is recorded as one of its episodes.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Annotated, Any
from uuid import UUID

from pydantic import Field, model_validator

from loom.agents.loop import AgentFailed, AgentLoop, first_cause, response_format
from loom.llm.calls import CallContext, Completion
from loom.nodes.agent_memory import (
    Conversation,
    open_conversation,
    record_exchange,
    summary_prompt,
    vector_tools,
)
from loom.nodes.agent_output import JsonOutput, TextOutput
from loom.nodes.agent_tools import Tool, loom_tool
from loom.nodes.base import (
    AgentAnswer,
    AgentRequest,
    NodeContext,
    NodeResult,
    NodeSpec,
    ParametersModel,
    Turn,
)
from loom.nodes.registry import register
from loom.workflows.definition import NodeType

# The node's own timeout bounds the whole loop; each model call gets less, so the gateway
# fails clearly first.
CALL_SHARE_OF_TIMEOUT = 0.8


class AgentParameters(ParametersModel):
    agent_id: UUID | None = Field(
        default=None,
        description="A governed agent of this workspace: its spec gives the model, "
        "instructions and tools, its maturity level governs every tool call, and the run "
        "is recorded as one of its episodes. Unset: the settings below.",
    )
    agent_version: int | None = Field(
        default=None, ge=1, description="Pin the agent's version (default: its live one)."
    )
    model: str | None = Field(
        default=None,
        min_length=3,
        max_length=200,
        description="provider/model as litellm names it (openai/gpt-4o-mini, "
        "anthropic/claude-3-5-haiku-latest), or local/smollm2-135m-instruct offline. "
        "Required without agent_id.",
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

    @model_validator(mode="after")
    def _model_or_agent(self) -> AgentParameters:
        if self.agent_id is None and self.model is None:
            raise ValueError("set model, or agent_id to run a governed agent")
        if self.agent_id is not None:
            inline = {"model", "fallbacks", "credential_id", "temperature", "max_tokens"}
            clash = sorted(inline & self.model_fields_set)
            if clash:
                raise ValueError(
                    f"{', '.join(clash)} come from the agent's spec when agent_id is set"
                )
        return self


class _Agent:
    def __init__(self, ctx: NodeContext, params: AgentParameters) -> None:
        if ctx.llm is None:
            raise AgentFailed(
                "This engine has no LLM gateway. On AWS only the AI_AGENT function has one: "
                "an AI_AGENT node inside a FLOW.LOOP body runs in the FLOW function, and "
                "cannot call a model there yet.",
                solution="Run this workflow on `loom up`, or on AWS move the AI_AGENT node "
                "out of the loop body.",
            )
        self.ctx = ctx
        self.params = params
        self.llm = ctx.llm
        self.call = CallContext(
            workspace_id=ctx.workspace_id,
            run_id=ctx.run_id,
            node_run_id=ctx.node_run_id,
            run_budget_usd=params.budget_usd,
        )
        self.deadline = (
            time.monotonic() + ctx.timeout_seconds if ctx.timeout_seconds is not None else None
        )
        self.loop = AgentLoop(
            self.complete,
            who=f"Agent '{ctx.node_id}'",
            max_steps=params.max_steps,
            output=params.output,
        )

    def _call(self) -> CallContext:
        """The call's context; with a node timeout, a deadline inside what is left of it."""
        if self.deadline is None:
            return self.call
        left = max(self.deadline - time.monotonic(), 0.001)
        return replace(self.call, deadline_seconds=left * CALL_SHARE_OF_TIMEOUT)

    async def complete(
        self, messages: list[dict[str, Any]], tools: list[Tool] | None, json_mode: bool
    ) -> Completion:
        assert self.params.model is not None
        return await self.llm.complete(
            self._call(),
            model=self.params.model,
            messages=messages,
            tools=[t.definition() for t in tools] if tools else None,
            response_format=response_format(self.params.output, json_mode),
            temperature=self.params.temperature,
            max_tokens=self.params.max_tokens,
            fallbacks=self.params.fallbacks,
            credential_id=self.params.credential_id,
        )

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        return await self.llm.embed(self._call(), model=model, inputs=texts)

    async def run(self) -> NodeResult:
        try:
            async with AsyncExitStack() as stack:
                tools, conversation = await self._attachments(stack)
                history = conversation.messages() if conversation is not None else []
                if self.params.agent_id is not None:
                    answer = await self._governed(tools, history, stack)
                    text, result = answer.text, _governed_result(answer, self.params)
                else:
                    text, value = await self.loop.answer(self._opening(history), tools)
                    result = self._result(value)
        except BaseExceptionGroup as group:
            # An open MCP session's task group wraps whatever ends the loop.
            raise first_cause(group) from None
        if conversation is not None:
            await record_exchange(self.ctx, conversation, self.params.prompt, text, self._summarize)
        return result

    async def _governed(
        self, tools: list[Tool], history: list[dict[str, Any]], stack: AsyncExitStack
    ) -> AgentAnswer:
        if self.ctx.agents is None:
            raise AgentFailed(
                "This engine cannot run governed agents.", solution="Run on `loom up` or AWS."
            )
        assert self.params.agent_id is not None
        output = self.params.output if "output" in self.params.model_fields_set else None
        request = AgentRequest(
            agent_id=self.params.agent_id,
            version=self.params.agent_version,
            prompt=self.params.prompt,
            system=self.params.system,
            history=history,
            tools=tools,
            output=output,
        )
        return await self.ctx.agents.run_for_node(self.ctx, request, stack)

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
        return tools, conversation

    def _opening(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.params.system:
            messages.append({"role": "system", "content": self.params.system})
        messages += history
        messages.append({"role": "user", "content": self.params.prompt})
        return messages

    async def _summarize(self, summary: str | None, turns: list[Turn]) -> str:
        completion = await self.loop.call(summary_prompt(summary, turns), None, json_mode=False)
        return completion.text.strip()

    def _result(self, value: Any) -> NodeResult:
        tally = self.loop.tally
        output: dict[str, Any] = {
            "model": tally.models[-1] if tally.models else self.params.model,
            "usage": tally.usage(),
            "tool_calls": tally.calls,
        }
        output["data" if isinstance(self.params.output, JsonOutput) else "text"] = value
        return NodeResult(output=output, metadata=_metadata(tally.warnings, tally.notices))


def _governed_result(answer: AgentAnswer, params: AgentParameters) -> NodeResult:
    output: dict[str, Any] = {
        "model": answer.model,
        "usage": dict(answer.usage),
        "tool_calls": list(answer.tool_calls),
        "agent": {
            "id": str(params.agent_id),
            "version": answer.agent_version,
            "maturity": answer.maturity,
            "episode_id": str(answer.episode_id),
            "decisions": list(answer.decisions),
            "recalled": list(answer.recalled),
        },
    }
    output["text" if isinstance(answer.value, str) else "data"] = answer.value
    return NodeResult(output=output, metadata=_metadata(answer.warnings, answer.notices))


def _metadata(warnings: Any, notices: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if warnings:
        metadata["warnings"] = list(dict.fromkeys(warnings))
    if notices:
        metadata["notices"] = list(notices)
    return metadata


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
