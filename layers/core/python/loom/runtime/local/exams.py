"""The exam worker inside ``loom up`` (an EventBridge schedule on AWS): every
``LOOM_AGENT_EXAM_INTERVAL_SECONDS`` it examines the agents that became ready
(``loom.agents.exam_worker.start_due_exams``), on its own thread and event loop, so exams
never hold up requests or workflow nodes. Stopping cancels an exam in progress (it is
recorded as an error, and the worker tries again next time)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from loom.agents.exam_worker import start_due_exams
from loom.agents.runtime import AgentRuntime
from loom.config import Settings
from loom.db.database import Database
from loom.engine.services import ServicesCache
from loom.llm.gateway import LlmGateway
from loom.secrets.vault import vault_for

log = logging.getLogger(__name__)


class ExamWorker:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.interval = settings.agent_exam_interval_seconds
        vault = vault_for(settings)
        llm = LlmGateway(db, settings=settings, vault=vault)
        self.runtime = AgentRuntime(db, llm, ServicesCache(db, vault), settings.base_url)
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="loom-exams", daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        task = self._task
        if task is not None:
            self._loop.call_soon_threadsafe(task.cancel)
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif not self._loop.is_closed():
            self._loop.close()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._round()
        finally:
            _close(self._loop)

    def _round(self) -> None:
        try:
            self._task = self._loop.create_task(start_due_exams(self.runtime, self.settings))
            done = self._loop.run_until_complete(self._task)
            if done:
                log.info("exam worker: %d exam(s) run", len(done))
        except asyncio.CancelledError:
            pass
        except Exception:  # a database hiccup must not end the worker
            log.exception("examining ready agents failed")
        finally:
            self._task = None


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the loop (litellm's logging worker, for one), then close it."""
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
