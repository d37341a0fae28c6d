"""The local engine inside ``loom up``: a runner on its own thread and event loop, so the
API's loop never waits on node work, and node work never waits on HTTP requests. The loop
also times out overdue human-in-the-loop requests."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from uuid import UUID

from loom.engine.advance import Advance
from loom.engine.run_state import Finished
from loom.engine.runner import LocalRunner
from loom.engine.states import RunStatus

log = logging.getLogger(__name__)


def _log_failure(done: Future[Advance] | Future[Advance | None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("driving a run failed: %s", done.exception())


def log_resumed(done: Future[list[Advance]]) -> None:
    if done.cancelled():
        return
    error = done.exception()
    if error is not None:
        log.error("resuming runs failed: %s", error)
    else:
        log.info("resumed runs settled: %d", len(done.result()))


class EngineThread:
    def __init__(self, runner: LocalRunner, *, deadline_sweep_seconds: float = 5.0) -> None:
        self.runner = runner
        self._sweep_seconds = deadline_sweep_seconds
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="loom-engine", daemon=True
        )

    def start(self) -> Future[list[Advance]]:
        """Start the loop and resume every active run; the future resolves when those
        runs have finished or wait for a person."""
        self._thread.start()
        watch = self.runner.watch_deadlines(self._sweep_seconds)
        asyncio.run_coroutine_threadsafe(watch, self._loop)
        return asyncio.run_coroutine_threadsafe(self.runner.resume_all(), self._loop)

    def submit(self, workspace_id: UUID, run_id: UUID) -> None:
        future = asyncio.run_coroutine_threadsafe(
            self.runner.drive_once(workspace_id, run_id), self._loop
        )
        future.add_done_callback(_log_failure)

    def report(self, workspace_id: UUID, run_id: UUID, finished: Finished) -> None:
        drive = self.runner.drive(workspace_id, run_id, finished=[finished])
        asyncio.run_coroutine_threadsafe(drive, self._loop).add_done_callback(_log_failure)

    def cancel(self, workspace_id: UUID, run_id: UUID, reason: str) -> RunStatus:
        cancelled = self.runner.cancel(workspace_id, run_id, reason)
        return asyncio.run_coroutine_threadsafe(cancelled, self._loop).result(30).status

    def stop(self, timeout: float = 10) -> None:
        """Cancel what is in flight (it resumes on the next start) and stop the loop."""

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_cancel_all(), self._loop).result(timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._loop.close()
