"""Chat with a governed agent: threads of messages with a running summary; each turn is
one episode.

A turn is opened before anything streams - the size check, the agent, the thread, the
claim that lets one turn at a time run in a thread, the user's message stored - so bad
input fails as a plain HTTP error and stores nothing. The turn then runs as a task of its
own: when the thread's unsummarized messages exceed the spec's token budget, all but the
most recent ``recent_messages`` are folded into the running summary by the agent's model
(``nodes.agent_memory.summary_prompt``, as CONVERSATION memory does); then the agent
answers in one episode of kind ``chat`` through ``AgentRuntime.execute``, with the summary
and the unsummarized messages as history, so governance, tool approvals, recall and the
episode record work as everywhere. The reply is stored with its episode and tool calls.
Events reach the caller through ``ChatTurn``, an async iterator; a caller that goes away
does not stop the turn (tools may already have acted), and the reply is then read from
the thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from loom.agents.child_runs import DetachedChildRuns
from loom.agents.recall import CHARS_PER_TOKEN
from loom.agents.registry import Agent, load_in
from loom.agents.registry import require as require_agent
from loom.agents.runtime import CALL_SHARE_OF_TIME_LEFT, AgentRuntime, Execution
from loom.agents.spec import WorkflowAgentTool
from loom.db import Database
from loom.db import threads as repo
from loom.db.database import Conn
from loom.engine.dispatch import RunDispatcher
from loom.errors import LoomError, NotFound, NotImplementedYet
from loom.llm.calls import CallContext
from loom.nodes.agent_memory import summary_prompt
from loom.nodes.base import AgentAnswer, ChildRuns, Turn

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 32_000
# The longest a turn may last, tool approvals included; a turn's claim on its thread is
# taken over after this and a minute more (its process died).
TURN_SECONDS = 900.0
STALE_TURN_SECONDS = TURN_SECONDS + 60.0
# Unsummarized messages read for a turn, newest first (twice the most a spec shows).
MAX_PENDING_MESSAGES = 400
TITLE_CHARS = 80

# Running turns, held here so that they finish even when their callers have gone.
_RUNNING: set[asyncio.Task[None]] = set()


class MessageTooLarge(LoomError):
    code = "message_too_large"
    status = 413
    retryable = False


class ThreadBusy(LoomError):
    code = "thread_busy"
    status = 409


class ThreadOfAnotherAgent(LoomError):
    code = "thread_of_another_agent"
    status = 409
    retryable = False


class ChatFailed(LoomError):
    code = "chat_failed"


@dataclass(frozen=True)
class ChatEvent:
    """``kind`` is the SSE event name: ``thread``, ``summary``, the runtime's events
    (``episode``, ``recall``, ``governance``, ``approval_required``, ``approval``,
    ``tool_call``, ``tool_result``, ``delta``, ``delegation``), then ``message`` (the
    stored reply) or ``error``."""

    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class TurnPlan:
    """An opened turn: the thread is claimed and the user's message stored."""

    workspace_id: UUID
    agent: Agent
    thread_id: UUID
    message_id: int
    message: str
    deadline: float  # time.monotonic()
    children: ChildRuns | None


def open_turn(
    db: Database,
    workspace_id: UUID,
    agent_id: UUID,
    message: str,
    *,
    thread_id: UUID | None,
    user_id: UUID | None,
    engine: RunDispatcher | None,
) -> TurnPlan:
    """Check and store the user's message in a new or existing thread of the agent.
    ``engine`` runs the workflows the agent uses as tools."""
    if len(message) > MAX_MESSAGE_CHARS:
        raise MessageTooLarge(
            f"The message has {len(message):,} characters; a chat message may have at most "
            f"{MAX_MESSAGE_CHARS:,}.",
            solution="Send a shorter message, or split it over several turns.",
        )
    deadline = time.monotonic() + TURN_SECONDS
    with db.tenant(workspace_id) as conn:
        agent = load_in(conn, workspace_id, agent_id)
        if thread_id is None:
            thread_id = repo.insert_thread(
                conn,
                workspace_id=workspace_id,
                agent_id=agent_id,
                title=" ".join(message.split())[:TITLE_CHARS],
                created_by=user_id,
            )
        else:
            _thread_of(conn, thread_id, agent)
        if not repo.claim_turn(conn, thread_id, STALE_TURN_SECONDS):
            raise ThreadBusy(
                f"Thread {thread_id} is answering another message.",
                solution="Wait for that reply (GET /v1/threads/{id} shows it), then send again.",
            )
        message_id = repo.add_message(
            conn, workspace_id=workspace_id, thread_id=thread_id, role="user", content=message
        )
    children = None
    if any(isinstance(t, WorkflowAgentTool) for t in agent.spec.tools):
        children = _children(db, engine, workspace_id, thread_id, agent, deadline)
    return TurnPlan(workspace_id, agent, thread_id, message_id, message, deadline, children)


def _children(
    db: Database,
    engine: RunDispatcher | None,
    workspace_id: UUID,
    thread_id: UUID,
    agent: Agent,
    deadline: float,
) -> ChildRuns:
    if engine is None:
        raise NotImplementedYet(
            f"Agent {agent.name} uses workflows as tools, and this API has no engine to run them.",
            solution="Chat through `loom up`, which hosts the local engine.",
        )
    trigger = {"type": "agent_tool", "via": "chat", "thread_id": str(thread_id)}
    return DetachedChildRuns(db, engine, workspace_id, deadline=deadline, trigger=trigger)


def _thread_of(conn: Conn, thread_id: UUID, agent: Agent) -> None:
    thread = repo.get_thread(conn, thread_id)
    if thread is None:
        raise _thread_not_found(thread_id)
    if thread["agent_id"] != agent.id:
        raise ThreadOfAnotherAgent(
            f"Thread {thread_id} is a conversation with another agent, not with {agent.name}.",
            solution="Chat in it through that agent, or leave out thread_id to start a new thread.",
        )


def _thread_not_found(thread_id: UUID) -> NotFound:
    return NotFound(f"Thread {thread_id} not found.", solution="Check the thread id.")


class ChatTurn:
    """A turn under way; iterate it (once) for its events as they happen."""

    def __init__(self, runtime: AgentRuntime, plan: TurnPlan) -> None:
        """Starts the turn as a task on the running event loop."""
        self.runtime = runtime
        self.plan = plan
        self.episode_id: UUID | None = None
        self._events: asyncio.Queue[ChatEvent | None] = asyncio.Queue()
        task = asyncio.get_running_loop().create_task(self._run())
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    async def __aiter__(self) -> AsyncIterator[ChatEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "episode" and self.episode_id is None:  # delegates' episodes emit nothing
            self.episode_id = UUID(data["episode_id"])
        # A copy: the gate updates its decision record after the event (the approval).
        self._events.put_nowait(ChatEvent(kind, dict(data)))

    async def _run(self) -> None:
        try:
            await self._turn()
        except Exception as exc:
            await self._emit("error", {**_shown(exc).to_dict(), "episode_id": self._episode()})
        finally:
            self._events.put_nowait(None)

    async def _turn(self) -> None:
        plan = self.plan
        await self._emit(
            "thread",
            {
                "thread_id": str(plan.thread_id),
                "agent_id": str(plan.agent.id),
                "message_id": plan.message_id,
            },
        )
        try:
            answer = await self._answer()
        except BaseException:  # also when cancelled (the process stops): free the thread
            await asyncio.shield(asyncio.to_thread(self._close, None))
            raise
        reply_id = await asyncio.to_thread(self._close, answer)
        await self._emit(
            "message",
            {
                "thread_id": str(plan.thread_id),
                "message_id": reply_id,
                "episode_id": str(answer.episode_id),
                "content": _content(answer),
                "model": answer.model,
                "usage": dict(answer.usage),
                "tool_calls": [dict(c) for c in answer.tool_calls],
                "notices": list(answer.notices),
                "warnings": list(answer.warnings),
            },
        )

    def _episode(self) -> str | None:
        return None if self.episode_id is None else str(self.episode_id)

    async def _answer(self) -> AgentAnswer:
        plan = self.plan
        history = await self._history()
        ctx = self.runtime.context(
            plan.workspace_id, uuid4(), f"chat:{plan.agent.name}", plan.children
        )
        execution = Execution(
            agent=plan.agent,
            prompt=plan.message,
            kind="chat",
            history=tuple(history),
            thread_id=plan.thread_id,
            deadline=plan.deadline,
            stream=True,
        )
        async with AsyncExitStack() as stack:
            return await self.runtime.execute(ctx, execution, stack, self._emit)

    async def _history(self) -> list[dict[str, Any]]:
        """The running summary and the messages it does not cover, folding the older ones
        into it first when they are over the spec's budget."""
        memory = self.plan.agent.spec.memory
        summary, pending = await asyncio.to_thread(self._pending)
        size = sum(len(m["content"]) for m in pending) // CHARS_PER_TOKEN
        if len(pending) > memory.recent_messages and size > memory.summarize_over_tokens:
            older, pending = pending[: -memory.recent_messages], pending[-memory.recent_messages :]
            summary = await self._fold(summary, older)
        shown = [{"role": m["role"], "content": m["content"]} for m in pending]
        if summary:
            shown.insert(
                0, {"role": "system", "content": f"Summary of the conversation so far: {summary}"}
            )
        return shown

    def _pending(self) -> tuple[str | None, list[dict[str, Any]]]:
        plan = self.plan
        with self.runtime.db.tenant(plan.workspace_id) as conn:
            thread = repo.get_thread(conn, plan.thread_id)
            assert thread is not None  # claimed by this turn
            newest = repo.newest_messages(
                conn,
                plan.thread_id,
                after=thread["summarized_through"],
                before=plan.message_id,
                limit=MAX_PENDING_MESSAGES,
            )
        return thread["summary"], newest

    async def _fold(self, summary: str | None, older: list[dict[str, Any]]) -> str:
        plan = self.plan
        spec = plan.agent.spec
        turns = [Turn(m["id"], m["role"], m["content"]) for m in older]
        left = max(plan.deadline - time.monotonic(), 0.001)
        call = CallContext(
            workspace_id=plan.workspace_id,
            agent_id=plan.agent.id,
            deadline_seconds=left * CALL_SHARE_OF_TIME_LEFT,
        )
        completion = await self.runtime.llm.complete(
            call,
            model=spec.model,
            messages=summary_prompt(summary, turns),
            temperature=spec.temperature,
            fallbacks=spec.fallbacks,
            credential_id=spec.credential_id,
        )
        folded = completion.text.strip()
        if not folded:
            raise ChatFailed(
                "The model gave an empty summary of the thread's older messages.",
                solution="Send the message again, or give the agent a stronger model.",
            )
        through = int(older[-1]["id"])
        await asyncio.to_thread(self._save_summary, folded, through)
        await self._emit("summary", {"summarized_through": through, "messages": len(older)})
        return folded

    def _save_summary(self, summary: str, through: int) -> None:
        with self.runtime.db.tenant(self.plan.workspace_id) as conn:
            repo.save_summary(conn, self.plan.thread_id, summary, through)

    def _close(self, answer: AgentAnswer | None) -> int | None:
        """Store the reply (if any), link the user's message to its episode, and free the
        thread, in one transaction; the reply's message id."""
        plan = self.plan
        reply_id = None
        with self.runtime.db.tenant(plan.workspace_id) as conn:
            if self.episode_id is not None:
                repo.set_message_episode(conn, plan.message_id, self.episode_id)
            if answer is not None:
                reply_id = repo.add_message(
                    conn,
                    workspace_id=plan.workspace_id,
                    thread_id=plan.thread_id,
                    role="assistant",
                    content=_content(answer),
                    episode_id=answer.episode_id,
                    tool_calls=[dict(c) for c in answer.tool_calls],
                )
            repo.release_turn(conn, plan.thread_id)
        return reply_id


def _content(answer: AgentAnswer) -> str:
    """The reply as stored: the text, or the JSON an output schema asked for."""
    return answer.value if isinstance(answer.value, str) else json.dumps(answer.value)


def _shown(exc: Exception) -> LoomError:
    if isinstance(exc, LoomError):
        return exc
    log.error("chat turn failed", exc_info=exc)
    return ChatFailed(
        "Something went wrong on our side.", solution="Retry; if it persists, report it."
    )


def list_threads(
    db: Database, workspace_id: UUID, agent_id: UUID, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        require_agent(conn, agent_id)
        return repo.list_threads(conn, agent_id, limit=limit, offset=offset)


def get_thread(
    db: Database, workspace_id: UUID, thread_id: UUID, *, after: int, limit: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The thread and a page of its messages, oldest first, after message id ``after``."""
    with db.tenant(workspace_id) as conn:
        thread = repo.get_thread(conn, thread_id)
        if thread is None:
            raise _thread_not_found(thread_id)
        return thread, repo.messages_after(conn, thread_id, after, limit=limit)
