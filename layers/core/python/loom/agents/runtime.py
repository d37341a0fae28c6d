"""Where governed agents run: each execution is one episode.

``AgentRuntime.execute`` opens the episode, recalls the agent's relevant past episodes,
builds its tools, runs the tool loop with the governance gate, and closes the episode with
what happened (tool calls, decisions, recall, outcome, cost, duration) and an embedded
summary for later recall. Every governance decision goes to the audit log in the same
transaction. Chat, AI_AGENT nodes bound to an agent, exams and delegation all come here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from loom.agents import recall as recall_mod
from loom.agents.gate import GovernanceGate
from loom.agents.governance import Policy, Risk
from loom.agents.loop import AgentFailed, AgentLoop, Emit, quiet, response_format
from loom.agents.registry import Agent, load_in
from loom.agents.spec import (
    CodeAgentTool,
    DelegateTool,
    HttpAgentTool,
    McpAgentTool,
    VectorMemoryTool,
    WorkflowAgentTool,
    effective_risk,
)
from loom.db import Database
from loom.db import agents as repo
from loom.engine.services import ServicesCache
from loom.errors import LoomError
from loom.llm.calls import CallContext, Completion, StreamEnd, TextDelta
from loom.llm.gateway import LlmGateway
from loom.nodes.agent_memory import memory_tools
from loom.nodes.agent_output import JsonOutput, TextOutput
from loom.nodes.agent_tools import Tool, loom_tool
from loom.nodes.base import AgentAnswer, AgentRequest, ChildRuns, NodeContext
from loom.workflows.definition import Node, NodeType

log = logging.getLogger(__name__)

MAX_DELEGATION_DEPTH = 3
CALL_SHARE_OF_TIME_LEFT = 0.8
_DELEGATE_SCHEMA = {
    "type": "object",
    "properties": {"message": {"type": "string", "maxLength": 20_000}},
    "required": ["message"],
}


@dataclass(frozen=True)
class Execution:
    """One execution of an agent. ``deadline`` is a ``time.monotonic()`` instant;
    ``stream`` sends the answer's text to ``emit`` as it arrives (chat)."""

    agent: Agent
    prompt: str
    kind: str  # chat, node, exam or delegation
    system: str = ""
    history: tuple[dict[str, Any], ...] = ()
    extra_tools: tuple[Tool, ...] = ()
    output: TextOutput | JsonOutput | None = None
    run_id: UUID | None = None
    node_run_id: UUID | None = None
    thread_id: UUID | None = None
    parent_episode_id: UUID | None = None
    deadline: float | None = None
    stream: bool = False
    depth: int = 0
    recall: bool = True
    unattended: bool = False  # nobody to approve calls (exams): they are refused at once
    forbid_tools: frozenset[str] = field(default_factory=frozenset)


class AgentRuntime:
    """``loom.nodes.base.AgentDesk`` for one database and LLM gateway."""

    def __init__(
        self, db: Database, llm: LlmGateway, services: ServicesCache, base_url: str
    ) -> None:
        self.db = db
        self.llm = llm
        self.services = services
        self.base_url = base_url

    async def run_for_node(
        self, ctx: NodeContext, request: AgentRequest, stack: AsyncExitStack
    ) -> AgentAnswer:
        agent = await asyncio.to_thread(
            self.load, ctx.workspace_id, request.agent_id, request.version
        )
        deadline = time.monotonic() + ctx.timeout_seconds if ctx.timeout_seconds else None
        execution = Execution(
            agent=agent,
            prompt=request.prompt,
            kind="node",
            system=request.system,
            history=tuple(dict(m) for m in request.history),
            extra_tools=tuple(request.tools),
            output=request.output,
            run_id=ctx.run_id,
            node_run_id=ctx.node_run_id,
            deadline=deadline,
        )
        return await self.execute(ctx, execution, stack)

    def load(self, workspace_id: UUID, agent_id: UUID, version: int | None = None) -> Agent:
        with self.db.tenant(workspace_id) as conn:
            return load_in(conn, workspace_id, agent_id, version)

    def context(
        self, workspace_id: UUID, episode_key: UUID, name: str, children: ChildRuns | None = None
    ) -> NodeContext:
        """What an agent's tools see outside a workflow run (chat, exams); ``children``
        runs WORKFLOW tools (without it they fail, saying so)."""
        from loom.engine.memory import WorkspaceMemory

        return NodeContext(
            workspace_id=workspace_id,
            run_id=episode_key,
            node_run_id=episode_key,
            node_id=name,
            attempt=1,
            run_input=None,
            upstream={},
            children=children,
            services=self.services.for_workspace(workspace_id),
            llm=self.llm,
            memory=WorkspaceMemory(self.db, workspace_id, None),
            agents=self,
        )

    async def execute(
        self,
        ctx: NodeContext,
        execution: Execution,
        stack: AsyncExitStack,
        emit: Emit = quiet,
    ) -> AgentAnswer:
        agent = execution.agent
        started = time.monotonic()
        episode_id, policy = await asyncio.to_thread(self._begin, ctx.workspace_id, execution)
        await emit(
            "episode",
            {
                "episode_id": str(episode_id),
                "agent_version": agent.version,
                "maturity": agent.maturity.name,
            },
        )
        call = CallContext(
            workspace_id=ctx.workspace_id,
            run_id=execution.run_id,
            node_run_id=execution.node_run_id,
            agent_id=agent.id,
            episode_id=episode_id,
        )
        episode = _Episode(self, ctx, execution, episode_id, call, emit)
        gate = GovernanceGate(
            db=self.db,
            workspace_id=ctx.workspace_id,
            episode_id=episode_id,
            run_id=execution.run_id,
            agent_name=agent.name,
            maturity=agent.maturity,
            policy=policy,
            approval_timeout_seconds=agent.spec.budget.approval_timeout_seconds,
            deadline=execution.deadline,
            emit=emit,
            base_url=self.base_url,
            unattended=execution.unattended,
        )
        output = execution.output or agent.spec.output
        loop = AgentLoop(
            episode.complete,
            who=f"Agent {agent.name}",
            max_steps=agent.spec.max_steps,
            output=output,
            gate=gate,
            emit=emit,
            budget_usd=agent.spec.budget.per_episode_usd,
        )
        recalled: list[recall_mod.Recalled] = []
        text, value, error = "", None, None
        try:
            recalled = await episode.recall()
            tools = [*await episode.tools(stack), *execution.extra_tools]
            tools = [t for t in tools if t.name not in execution.forbid_tools]
            messages = episode.opening(recalled)
            text, value = await loop.answer(messages, tools)
        except LoomError as exc:
            error = exc
            raise
        except BaseException as exc:
            error = AgentFailed(f"The episode was interrupted: {type(exc).__name__}.", solution="")
            raise
        finally:
            outcome = "success" if error is None else "failure"
            await asyncio.shield(
                episode.close(
                    outcome=outcome,
                    output=value,
                    text=text if error is None else f"failed: {error.message}",
                    error=error,
                    loop=loop,
                    decisions=gate.decisions,
                    recalled=recalled,
                    seconds=time.monotonic() - started,
                )
            )
        tally = loop.tally
        return AgentAnswer(
            text=text,
            value=value,
            model=tally.models[-1] if tally.models else agent.spec.model,
            usage=tally.usage(),
            tool_calls=tally.calls,
            episode_id=episode_id,
            agent_version=agent.version,
            maturity=agent.maturity.name,
            decisions=gate.decisions,
            recalled=[r.record() for r in recalled],
            warnings=tally.warnings,
            notices=tally.notices,
        )

    def _begin(self, workspace_id: UUID, execution: Execution) -> tuple[UUID, Policy]:
        agent = execution.agent
        with self.db.tenant(workspace_id) as conn:
            row = conn.execute(
                "SELECT settings -> 'agent_policy' AS policy FROM workspaces"
            ).fetchone()
            episode_id = repo.open_episode(
                conn,
                workspace_id=workspace_id,
                agent_id=agent.id,
                agent_version=agent.version,
                kind=execution.kind,
                input={"prompt": execution.prompt, "system": execution.system},
                run_id=execution.run_id,
                node_run_id=execution.node_run_id,
                thread_id=execution.thread_id,
                parent_episode_id=execution.parent_episode_id,
            )
        overrides = row["policy"] if row and isinstance(row["policy"], dict) else None
        return episode_id, Policy(overrides)


class _Episode:
    """One execution's model calls, tools, recall and record."""

    def __init__(
        self,
        runtime: AgentRuntime,
        ctx: NodeContext,
        execution: Execution,
        episode_id: UUID,
        call: CallContext,
        emit: Emit,
    ) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.execution = execution
        self.agent = execution.agent
        self.episode_id = episode_id
        self.call = call
        self.emit = emit

    def _call(self) -> CallContext:
        if self.execution.deadline is None:
            return self.call
        left = max(self.execution.deadline - time.monotonic(), 0.001)
        return replace(self.call, deadline_seconds=left * CALL_SHARE_OF_TIME_LEFT)

    async def complete(
        self, messages: list[dict[str, Any]], tools: list[Tool] | None, json_mode: bool
    ) -> Completion:
        spec = self.agent.spec
        options: dict[str, Any] = {
            "model": spec.model,
            "messages": messages,
            "tools": [t.definition() for t in tools] if tools else None,
            "response_format": response_format(self.execution.output or spec.output, json_mode),
            "temperature": spec.temperature,
            "max_tokens": spec.max_tokens,
            "fallbacks": spec.fallbacks,
            "credential_id": spec.credential_id,
        }
        if not self.execution.stream:
            return await self.runtime.llm.complete(self._call(), **options)
        async for event in self.runtime.llm.stream(self._call(), **options):
            if isinstance(event, TextDelta) and event.text:
                await self.emit("delta", {"text": event.text})
            elif isinstance(event, StreamEnd):
                return event.completion
        raise AgentFailed("The model's stream ended without an answer.", solution="Retry.")

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        return await self.runtime.llm.embed(self._call(), model=model, inputs=texts)

    async def recall(self) -> list[recall_mod.Recalled]:
        settings = self.agent.spec.memory.recall
        if not settings.enabled or not self.execution.recall:
            return []
        try:
            [vector] = await self.embed(settings.embedding_model, [self.execution.prompt])
            found = await recall_mod.recall(
                self.runtime.db,
                self.ctx.workspace_id,
                self.agent.id,
                vector,
                limit=settings.max_episodes,
                token_budget=settings.token_budget,
            )
        except LoomError as exc:
            log.warning("agent %s recalled nothing: %s", self.agent.id, exc.message)
            return []
        if found:
            await self.emit("recall", {"episodes": [r.record() for r in found]})
        return found

    def opening(self, recalled: list[recall_mod.Recalled]) -> list[dict[str, Any]]:
        spec = self.agent.spec
        system = f"You are {self.agent.name}, {spec.role}."
        if spec.instructions:
            system += "\n\n" + spec.instructions
        if self.execution.system:
            system += "\n\n" + self.execution.system
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        if recalled:
            messages.append(recall_mod.context_message(recalled))
        messages += [dict(m) for m in self.execution.history]
        messages.append({"role": "user", "content": self.execution.prompt})
        return messages

    async def tools(self, stack: AsyncExitStack) -> list[Tool]:
        tools: list[Tool] = []
        for index, spec_tool in enumerate(self.agent.spec.tools):
            if isinstance(spec_tool, McpAgentTool):
                from loom.nodes.agent_mcp import mcp_tools

                node = _node(index, "MCP", spec_tool)
                for tool in await mcp_tools(self.ctx, node, stack):
                    tools.append(_raised(tool, spec_tool))
            elif isinstance(spec_tool, VectorMemoryTool):
                for tool in memory_tools(self.ctx, spec_tool, self.embed):
                    tools.append(_raised(tool, spec_tool))
            elif isinstance(spec_tool, DelegateTool):
                tools.append(self._delegate(spec_tool))
            elif isinstance(spec_tool, HttpAgentTool | CodeAgentTool | WorkflowAgentTool):
                tool = loom_tool(self.ctx, _node(index, spec_tool.type, spec_tool))
                tools.append(_raised(tool, spec_tool))
        return tools

    def _delegate(self, spec_tool: DelegateTool) -> Tool:
        async def run(args: dict[str, Any]) -> Any:
            if self.execution.depth + 1 > MAX_DELEGATION_DEPTH:
                raise AgentFailed(
                    f"Delegation deeper than {MAX_DELEGATION_DEPTH} agents is refused.",
                    solution="Answer without delegating further.",
                )
            callee = await asyncio.to_thread(
                self.runtime.load, self.ctx.workspace_id, spec_tool.agent_id
            )
            execution = Execution(
                agent=callee,
                prompt=str(args.get("message", "")),
                kind="delegation",
                run_id=self.execution.run_id,
                node_run_id=self.execution.node_run_id,
                parent_episode_id=self.episode_id,
                deadline=self.execution.deadline,
                depth=self.execution.depth + 1,
            )
            await self.emit("delegation", {"agent_id": str(callee.id), "agent": callee.name})
            async with AsyncExitStack() as stack:
                answer = await self.runtime.execute(self.ctx, execution, stack)
            return {"answer": answer.value, "episode_id": str(answer.episode_id)}

        risk = effective_risk(spec_tool)
        return Tool(spec_tool.name, spec_tool.description, _DELEGATE_SCHEMA, run, risk.value)

    async def close(
        self,
        *,
        outcome: str,
        output: Any,
        text: str,
        error: LoomError | None,
        loop: AgentLoop,
        decisions: list[dict[str, Any]],
        recalled: list[recall_mod.Recalled],
        seconds: float,
    ) -> None:
        summary = recall_mod.summarize(self.execution.prompt, outcome, text)
        embedding = None
        settings = self.agent.spec.memory.recall
        if settings.enabled:
            try:
                [embedding] = await self.embed(settings.embedding_model, [summary])
            except LoomError as exc:
                log.warning("episode %s is not recallable: %s", self.episode_id, exc.message)
        tally = loop.tally
        await asyncio.to_thread(
            self._store,
            outcome=outcome,
            output=output,
            error=None if error is None else f"{error.code}: {error.message}",
            tool_calls=tally.calls,
            decisions=decisions,
            recalled=[r.record() for r in recalled],
            usage=tally.usage(),
            cost_usd=tally.cost_usd,
            duration_ms=int(seconds * 1000),
            summary=summary,
            embedding=embedding,
        )

    def _store(self, **closing: Any) -> None:
        workspace_id = self.ctx.workspace_id
        with self.runtime.db.tenant(workspace_id) as conn:
            repo.close_episode(conn, self.episode_id, **closing)
            for decision in closing["decisions"]:
                repo.audit(
                    conn,
                    workspace_id=workspace_id,
                    agent_id=self.agent.id,
                    agent_version=self.agent.version,
                    episode_id=self.episode_id,
                    event="tool_decision",
                    detail=decision,
                )


def _node(index: int, subtype: str, spec_tool: Any) -> Node:
    parameters = spec_tool.model_dump(mode="json", exclude={"type", "risk"})
    return Node(id=f"tool_{index}", type=NodeType.TOOL, subtype=subtype, parameters=parameters)


def _raised(tool: Tool, spec_tool: Any) -> Tool:
    """The tool at the higher of its own risk class and the one the spec gives it."""
    raised = spec_tool.risk
    if raised is None:
        return tool
    if raised.rank > Risk(tool.risk).rank:
        return replace(tool, risk=raised.value)
    return tool
