"""The local engine: the Step Functions loop, in-process with asyncio.

advance → run the ready nodes concurrently (under a per-run and a global limit) → report
what finished, batched → advance, until the run is finished or waits for a person. Waits
are timers here and rows in the database, so a runner that restarts picks up every active
run (``resume_all``), wakes its waits on time and resumes interrupted nodes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from uuid import UUID

from loom.db import runs as repo
from loom.engine.advance import Advance, Engine, Invocation
from loom.engine.hil import HilDesk, expire_overdue
from loom.engine.invoke import invoke
from loom.engine.memory import WorkspaceMemory
from loom.engine.run_state import Finished, ReadyItem
from loom.engine.service import get_run, start_child_run, start_run
from loom.engine.service import resume as resume_waiting
from loom.engine.services import ServicesCache
from loom.engine.states import RunStatus
from loom.errors import LoomError
from loom.nodes.base import AgentAnswer, AgentRequest, HumanDesk, NodeContext

if TYPE_CHECKING:
    from loom.agents.runtime import AgentRuntime
    from loom.llm.gateway import LlmGateway
    from loom.secrets.vault import Vault

log = logging.getLogger(__name__)

OnAdvance = Callable[[Advance], None]


class ChildRunFailed(LoomError):
    code = "child_run_failed"


class LocalRunner:
    def __init__(
        self,
        engine: Engine,
        *,
        per_run_limit: int = 16,
        global_limit: int = 64,
        on_advance: OnAdvance | None = None,
        vault: Vault | None = None,
        base_url: str = "http://127.0.0.1:8000",
        llm: LlmGateway | None = None,
    ) -> None:
        self.engine = engine
        self.base_url = base_url
        self.llm = llm
        self.services = ServicesCache(engine.db, vault)
        self.per_run_limit = per_run_limit
        self.global_limit = global_limit
        self.on_advance = on_advance
        self._global: asyncio.Semaphore | None = None
        self._tasks: dict[UUID, set[asyncio.Task[Finished]]] = {}

    @cached_property
    def agents(self) -> AgentRuntime | None:
        """Where governed agents run (None without a model gateway), built when first asked
        for: it brings the agent loop and every tool's module, which only an AI_AGENT node
        bound to an agent (or an exam) uses."""
        if self.llm is None:
            return None
        from loom.agents.runtime import AgentRuntime

        return AgentRuntime(self.engine.db, self.llm, self.services, self.base_url)

    def _advance(
        self, workspace_id: UUID, run_id: UUID, finished: list[Finished] | None = None, **kw: Any
    ) -> Advance:
        result = self.engine.advance(workspace_id, run_id, finished or (), **kw)
        if self.on_advance is not None:
            self.on_advance(result)
        return result

    async def drive(
        self,
        workspace_id: UUID,
        run_id: UUID,
        *,
        recover: bool = False,
        finished: list[Finished] | None = None,
    ) -> Advance:
        """Run ``run_id`` until it finishes or waits for a person; return the last state.
        ``finished`` reports results that arrived from outside (a resumed wait) first."""
        if self._global is None:
            self._global = asyncio.Semaphore(self.global_limit)
        per_run = asyncio.Semaphore(self.per_run_limit)
        in_flight: set[asyncio.Task[Finished]] = self._tasks.setdefault(run_id, set())
        try:
            state = self._advance(workspace_id, run_id, finished, recover=recover)
            while True:
                for item in state.ready:
                    job = self._run(item, state.invocations[item.node_id], per_run)
                    in_flight.add(asyncio.create_task(job, name=f"{run_id}:{item.node_id}"))
                if state.finished or not in_flight:
                    return state
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                in_flight.difference_update(done)
                results = [task.result() for task in done if not task.cancelled()]
                state = self._advance(workspace_id, run_id, results)
        finally:
            for task in in_flight:
                task.cancel()
            self._tasks.pop(run_id, None)

    async def cancel(self, workspace_id: UUID, run_id: UUID, reason: str = "Cancelled.") -> Advance:
        state = self._advance(workspace_id, run_id, cancel=reason)
        for task in list(self._tasks.get(run_id, ())):
            task.cancel()
        return state

    async def resume(self, workspace_id: UUID, token: str, payload: Any) -> Advance:
        """Complete the node waiting on ``token`` with ``payload`` as its output and drive
        the run on. A token works once: the node is no longer waiting afterwards."""
        run_id, node_id, attempt = await asyncio.to_thread(
            resume_waiting, self.engine.db, workspace_id, token
        )
        woken = Finished(node_id, attempt, "completed", output=payload)
        return await self.drive(workspace_id, run_id, finished=[woken])

    async def expire_overdue(self) -> int:
        """Apply the timeout action of every human-in-the-loop request past its deadline and
        drive those runs on; how many timed out."""
        answers = await asyncio.to_thread(expire_overdue, self.engine.db, self.engine.clock())
        reports = [(a.workspace_id, r) for a in answers if (r := a.node_report()) is not None]
        for _, (run_id, finished) in reports:
            log.info("request for %s of run %s timed out", finished.node_id, run_id)
        await asyncio.gather(
            *(self.drive(ws, run_id, finished=[finished]) for ws, (run_id, finished) in reports)
        )
        return len(reports)

    async def watch_deadlines(self, every: float) -> None:
        """``expire_overdue`` every ``every`` seconds, until cancelled."""
        while True:
            try:
                await self.expire_overdue()
            except Exception:  # a database hiccup must not end the watch
                log.exception("timing out overdue requests failed")
            await asyncio.sleep(every)

    async def resume_all(self) -> list[Advance]:
        """Pick up every active top-level run of this engine (after a restart)."""
        with self.engine.db.system() as conn:
            active = repo.locate_active_runs(conn, "local")
        log.info("resuming %d active run(s)", len(active))
        resumed = await asyncio.gather(
            *(self.drive_once(ws, run, recover=True) for ws, run in active)
        )
        return [state for state in resumed if state is not None]

    async def drive_once(
        self, workspace_id: UUID, run_id: UUID, *, recover: bool = False
    ) -> Advance | None:
        """``drive``, unless this runner drives the run already: None then. A resume that
        races a new run's hand-over would otherwise take the node that run is executing
        for an interrupted one and execute it again. ``drive`` registers the run before
        its first await, so the check cannot race on the loop."""
        if run_id in self._tasks:
            log.debug("run %s is being driven already", run_id)
            return None
        return await self.drive(workspace_id, run_id, recover=recover)

    async def _run(
        self, item: ReadyItem, invocation: Invocation, per_run: asyncio.Semaphore
    ) -> Finished:
        if item.kind == "wait":
            await _sleep_until(item.wake_at, self.engine)
            return Finished(item.node_id, item.attempt, "completed")
        await _sleep_until(item.not_before, self.engine)
        assert self._global is not None
        async with per_run, self._global:
            return await self.execute(invocation)

    async def execute(self, invocation: Invocation, humans: HumanDesk | None = None) -> Finished:
        """Execute one task node with what this engine lends nodes; ``humans`` replaces the
        desk (on AWS, one that files requests with the execution's task token)."""
        workspace_id = invocation.workspace_id
        return await invoke(
            invocation,
            children=_Children(self, invocation),
            services=self.services.for_workspace(workspace_id),
            humans=humans or HilDesk(self.engine.db, workspace_id, self.base_url),
            llm=self.llm,
            memory=WorkspaceMemory(self.engine.db, workspace_id, invocation.run_id),
            agents=_Agents(self) if self.llm is not None else None,
        )


class _Agents:
    """The runner's ``AgentDesk``: its agent runtime, built when a node first runs an agent."""

    def __init__(self, runner: LocalRunner) -> None:
        self.runner = runner

    async def run_for_node(
        self, ctx: NodeContext, request: AgentRequest, stack: AsyncExitStack
    ) -> AgentAnswer:
        runtime = self.runner.agents
        assert runtime is not None  # lent only by a runner with a model gateway
        return await runtime.run_for_node(ctx, request, stack)


class _Children:
    """FLOW.LOOP's view of the engine: run one body as a child run and wait for it."""

    def __init__(self, runner: LocalRunner, parent: Invocation) -> None:
        self.runner = runner
        self.parent = parent

    async def run_child(self, input: Any, *, key: str) -> Any:
        parent = self.parent
        run_id, status, output, error = await asyncio.to_thread(
            start_child_run,
            self.runner.engine.db,
            parent.workspace_id,
            parent.run_id,
            parent.item.node_run_id,
            parent.item.node_id,
            input,
            key,
        )
        if not status.finished:
            state = await self.runner.drive(parent.workspace_id, run_id, recover=True)
            status, output, error = state.status, state.output, state.error
        return _outcome(run_id, status, output, error, f"Loop iteration {key.rsplit(':', 1)[-1]}")

    async def run_workflow(self, workflow_id: UUID, input: Any, *, key: str) -> Any:
        db, workspace_id = self.runner.engine.db, self.parent.workspace_id
        trigger = {"type": "agent_tool", "run_id": str(self.parent.run_id)}
        started = await asyncio.to_thread(
            start_run, db, workspace_id, workflow_id, input, idempotency_key=key, trigger=trigger
        )
        if not started.status.finished:
            await self.runner.drive(workspace_id, started.run_id, recover=not started.created)
        run = (await asyncio.to_thread(get_run, db, workspace_id, started.run_id)).run
        status = RunStatus(run["status"])
        return _outcome(started.run_id, status, run["output"], run["error"], "The workflow")


def _outcome(run_id: UUID, status: RunStatus, output: Any, error: Any, what: str) -> Any:
    if status is RunStatus.SUCCESS:
        return output
    if status is RunStatus.WAITING_FOR_HUMAN:
        raise ChildRunFailed(
            f"{what} waits for a person, which it cannot do here.",
            solution="Move the approval out of it.",
        )
    reason = (error or {}).get("message", status.value) if isinstance(error, dict) else status
    raise ChildRunFailed(f"{what} failed: {reason}", solution=f"See run {run_id}.")


async def _sleep_until(when: datetime | None, engine: Engine) -> None:
    if when is None:
        return
    delay = (when - engine.clock()).total_seconds()
    if delay > 0:
        await asyncio.sleep(delay)
