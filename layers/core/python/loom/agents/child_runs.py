"""Workflows as tools for agents that run outside a workflow run (chat).

Inside a run, the engine lends nodes its own ``ChildRuns``; outside one there is no run to
hang a child on, so the workflow is started as a run of its own (idempotent by the tool
call's key, so a retried call reuses it), handed to the API's engine, and waited for by
polling its status with backoff, up to the turn's deadline. A workflow waiting for a
person keeps being waited for: in chat someone may well answer it in time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

from loom.db import Database
from loom.db import runs as runs_repo
from loom.engine.dispatch import RunDispatcher
from loom.engine.runner import ChildRunFailed
from loom.engine.service import start_run
from loom.engine.states import RunStatus

FIRST_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 1.0


class DetachedChildRuns:
    """``loom.nodes.base.ChildRuns`` over the database and a ``RunDispatcher``."""

    def __init__(
        self,
        db: Database,
        dispatcher: RunDispatcher,
        workspace_id: UUID,
        *,
        deadline: float,
        trigger: dict[str, Any],
    ) -> None:
        """``deadline``: the ``time.monotonic()`` instant after which nothing is waited for;
        ``trigger``: how the runs record what started them."""
        self.db = db
        self.dispatcher = dispatcher
        self.workspace_id = workspace_id
        self.deadline = deadline
        self.trigger = trigger

    async def run_child(self, input: Any, *, key: str) -> Any:
        raise ChildRunFailed(
            "Only a node of a workflow run has a body to run as a child run.",
            solution="Use a WORKFLOW tool that names the workflow to run.",
        )

    async def run_workflow(self, workflow_id: UUID, input: Any, *, key: str) -> Any:
        started = await asyncio.to_thread(
            start_run,
            self.db,
            self.workspace_id,
            workflow_id,
            input,
            idempotency_key=key,
            trigger=self.trigger,
        )
        if started.created:
            self.dispatcher.submit(self.workspace_id, started.run_id)
        run = await self._finished(started.run_id)
        status = RunStatus(run["status"])
        if status is RunStatus.SUCCESS:
            return run["output"]
        if not status.finished:
            raise ChildRunFailed(
                f"The workflow did not finish in the time this conversation turn had; it "
                f"is still {status.value} as run {started.run_id}.",
                solution="Tell the user the run id; they can follow it in the runs API.",
            )
        error = run["error"]
        reason = error.get("message", status.value) if isinstance(error, dict) else status.value
        raise ChildRunFailed(
            f"The workflow failed: {reason}", solution=f"See run {started.run_id}."
        )

    async def _finished(self, run_id: UUID) -> dict[str, Any]:
        """The run once it is over, or as it is at the deadline."""
        delay = FIRST_POLL_SECONDS
        while True:
            run = await asyncio.to_thread(self._read, run_id)
            left = self.deadline - time.monotonic()
            if RunStatus(run["status"]).finished or left <= 0:
                return run
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, MAX_POLL_SECONDS)

    def _read(self, run_id: UUID) -> dict[str, Any]:
        with self.db.tenant(self.workspace_id) as conn:
            run = runs_repo.get_run(conn, run_id)
        assert run is not None  # this workspace started it; runs are never deleted
        return run
