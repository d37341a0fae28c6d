"""How the API hands runs to an engine: the local runner's thread, or (on AWS) Step
Functions. The API only starts rows and asks the dispatcher to drive or cancel them."""

from __future__ import annotations

import asyncio
from typing import Protocol
from uuid import UUID

from loom.engine.run_state import Finished
from loom.engine.states import RunStatus


class RunDispatcher(Protocol):
    def submit(self, workspace_id: UUID, run_id: UUID) -> None:
        """Start driving ``run_id``; returns at once."""
        ...

    def report(self, workspace_id: UUID, run_id: UUID, finished: Finished) -> None:
        """Deliver a result from outside (a person's answer) and drive the run on."""
        ...

    def cancel(self, workspace_id: UUID, run_id: UUID, reason: str) -> RunStatus:
        """Cancel the run and whatever of it is in flight; return its status."""
        ...


async def submit_from_loop(dispatcher: RunDispatcher, workspace_id: UUID, run_id: UUID) -> None:
    """``submit`` from a coroutine without blocking its event loop. The local engines only
    enqueue, so they are called in place; a dispatcher that calls out over the network
    (Step Functions) says so with ``CALLS_OUT = True`` and is called in a worker thread."""
    if getattr(dispatcher, "CALLS_OUT", False):
        await asyncio.to_thread(dispatcher.submit, workspace_id, run_id)
    else:
        dispatcher.submit(workspace_id, run_id)
