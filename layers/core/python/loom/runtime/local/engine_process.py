"""The local engine in a process of its own inside ``loom up``.

Node work (expressions, transforms, agents' tool loops) and request handling used to share
one interpreter lock, so a busy engine held up every API request behind it. Here the
runner, its deadline watch and the exam worker live in a spawned child process; the API
process keeps an ``EngineProcess``, a ``RunDispatcher`` that sends the child commands over
a queue (the triggers stay with the API: they only start runs and hand them over).

Nothing is lost between the two: a run is committed before it is handed over, and the
child resumes every active run when it starts, so a command lost with a crashed child is
made good by the restart that follows. A hand-over that races that resume does no node
work twice (``LocalRunner.drive_once``).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import queue
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any, Literal
from uuid import UUID

from loom.config import Settings
from loom.db import Database
from loom.db.urls import DatabaseUrls
from loom.engine.run_state import Finished
from loom.engine.states import RunStatus
from loom.errors import LoomError

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
CANCEL_TIMEOUT_SECONDS = 30.0


class EngineUnavailable(LoomError):
    code = "engine_unavailable"
    status = 503


@dataclass(frozen=True)
class _Submit:
    workspace_id: UUID
    run_id: UUID


@dataclass(frozen=True)
class _Report:
    workspace_id: UUID
    run_id: UUID
    finished: Finished


@dataclass(frozen=True)
class _Cancel:
    request: int
    workspace_id: UUID
    run_id: UUID
    reason: str


@dataclass(frozen=True)
class _Stop:
    pass


@dataclass(frozen=True)
class _Ready:
    pid: int


@dataclass(frozen=True)
class _Cancelled:
    request: int
    status: str


@dataclass(frozen=True)
class _CancelFailed:
    """A ``LoomError`` crosses as its class (pickled by reference) and its fields, since
    exceptions with keyword-only arguments do not unpickle."""

    request: int
    kind: type[LoomError]
    message: str
    solution: str
    details: Any

    def error(self) -> LoomError:
        return self.kind(self.message, solution=self.solution, details=self.details)


Command = _Submit | _Report | _Cancel | _Stop
Reply = _Ready | _Cancelled | _CancelFailed


@dataclass
class _Child:
    process: BaseProcess
    commands: Queue[Command]
    replies: Queue[Reply]


class EngineProcess:
    """The API process's side: spawns the child, restarts it when it dies (with backoff),
    and answers ``cancel`` from its replies."""

    def __init__(
        self,
        settings: Settings,
        urls: DatabaseUrls,
        *,
        restart_delays: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30),
    ) -> None:
        self.settings = settings
        self.urls = urls
        self.restart_delays = restart_delays
        self.ready = threading.Event()
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._dead = threading.Event()
        self._requests = itertools.count(1)
        self._pending: dict[int, Future[RunStatus]] = {}
        self._child: _Child | None = None
        self._supervisor = threading.Thread(
            target=self._supervise, name="loom-engine-supervisor", daemon=True
        )

    @property
    def state(self) -> Literal["ok", "starting", "restarting"]:
        if self.ready.is_set():
            return "ok"
        return "restarting" if self._dead.is_set() else "starting"

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.process.pid if child is not None else None

    def start(self) -> None:
        self._child = self._spawn()
        self._supervisor.start()

    def submit(self, workspace_id: UUID, run_id: UUID) -> None:
        self._send(_Submit(workspace_id, run_id))

    def report(self, workspace_id: UUID, run_id: UUID, finished: Finished) -> None:
        self._send(_Report(workspace_id, run_id, finished))

    def cancel(self, workspace_id: UUID, run_id: UUID, reason: str) -> RunStatus:
        request = next(self._requests)
        answer: Future[RunStatus] = Future()
        with self._lock:
            self._pending[request] = answer
        self._send(_Cancel(request, workspace_id, run_id, reason))
        try:
            return answer.result(CANCEL_TIMEOUT_SECONDS)
        except FutureTimeout:
            raise EngineUnavailable(
                "The engine did not confirm the cancellation in time.",
                solution="Try again in a moment; `GET /v1/runs/{id}` shows the run's status.",
            ) from None
        finally:
            with self._lock:
                self._pending.pop(request, None)

    def stop(self, timeout: float = 20) -> None:
        """Ask the child to stop (it cancels what is in flight, which resumes on the next
        start) and wait for it; kill it if it does not stop in time."""
        self._stopping.set()
        child = self._child
        if child is None:
            return
        if child.process.is_alive():
            child.commands.put(_Stop())
            child.process.join(timeout)
            if child.process.is_alive():
                log.error("the engine process did not stop in %g s; killing it", timeout)
                child.process.kill()
                child.process.join(5)
        if self._supervisor.is_alive():
            self._supervisor.join(5)
        _close(child)

    def _send(self, command: Command) -> None:
        child = self._child
        if child is None:
            raise EngineUnavailable(
                "The engine is not running.", solution="Start it with `loom up`."
            )
        try:
            child.commands.put(command)
        except ValueError:  # the queue is closed: loom up is stopping
            raise EngineUnavailable(
                "The engine is stopping.", solution="Start Loom again with `loom up`."
            ) from None

    def _spawn(self) -> _Child:
        commands: Queue[Command] = _SPAWN.Queue()
        replies: Queue[Reply] = _SPAWN.Queue()
        process = _SPAWN.Process(
            target=run_engine,
            args=(self.settings, self.urls, commands, replies),
            name="loom-engine",
            daemon=True,
        )
        process.start()
        return _Child(process, commands, replies)

    def _supervise(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            child = self._child
            assert child is not None
            reply: Reply | None = None
            try:
                reply = child.replies.get(timeout=0.5)
            except queue.Empty:
                pass
            except Exception:  # a child killed while writing leaves a torn message
                log.warning("an unreadable reply from the engine process", exc_info=True)
            if reply is None:
                if not child.process.is_alive() and not self._stopping.is_set():
                    failures = self._restart(child, failures)
            elif isinstance(reply, _Ready):
                failures = 0
                self.ready.set()
                log.info("engine process %d is ready", reply.pid)
            else:
                self._answer(reply)

    def _restart(self, dead: _Child, failures: int) -> int:
        delay = self.restart_delays[min(failures, len(self.restart_delays) - 1)]
        log.error(
            "the engine process exited with code %s; restarting it in %g s "
            "(it resumes every active run)",
            dead.process.exitcode,
            delay,
        )
        self.ready.clear()
        self._dead.set()
        self._fail_pending()
        if self._stopping.wait(delay):
            return failures
        # Commands sent meanwhile went to the dead child's queue; the new child's resume
        # covers them.
        self._child = self._spawn()
        _close(dead)
        self.restarts += 1
        return failures + 1

    def _answer(self, reply: _Cancelled | _CancelFailed) -> None:
        with self._lock:
            answer = self._pending.get(reply.request)
        if answer is None:  # the caller gave up waiting
            return
        if isinstance(reply, _Cancelled):
            answer.set_result(RunStatus(reply.status))
        else:
            answer.set_exception(reply.error())

    def _fail_pending(self) -> None:
        with self._lock:
            pending = list(self._pending.values())
        for answer in pending:
            if not answer.done():
                answer.set_exception(
                    EngineUnavailable(
                        "The engine restarted before confirming the cancellation.",
                        solution="Try again in a moment.",
                    )
                )


def _close(child: _Child) -> None:
    for channel in (child.commands, child.replies):
        channel.close()
        channel.cancel_join_thread()


def run_engine(
    settings: Settings, urls: DatabaseUrls, commands: Queue[Command], replies: Queue[Reply]
) -> None:
    """The child process: the engine thread and the exam worker, driven by commands until
    told to stop, until SIGTERM, or until its parent is gone."""
    from loom.observability import configure_logging
    from loom.runtime.local.engine_thread import EngineThread, log_resumed
    from loom.runtime.local.exams import ExamWorker
    from loom.runtime.local.platform import build_engine

    configure_logging(settings.log_level)
    os.nice(settings.engine_nice)
    stop = threading.Event()
    # Ctrl-C reaches the whole process group; the parent decides when the engine stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    parent = os.getppid()
    db = Database(
        urls,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.connect_timeout_seconds,
    ).open()
    _, runner = build_engine(settings, db)
    engine = EngineThread(runner, deadline_sweep_seconds=settings.hil_sweep_seconds)
    exams = ExamWorker(settings, db)
    cancels = ThreadPoolExecutor(max_workers=4, thread_name_prefix="loom-cancel")

    def cancel(command: _Cancel) -> None:
        try:
            status = engine.cancel(command.workspace_id, command.run_id, command.reason)
            replies.put(_Cancelled(command.request, status.value))
        except LoomError as exc:
            replies.put(
                _CancelFailed(command.request, type(exc), exc.message, exc.solution, exc.details)
            )
        except Exception:
            log.exception("cancelling run %s failed", command.run_id)
            replies.put(
                _CancelFailed(
                    command.request,
                    LoomError,
                    "Cancelling the run failed in the engine.",
                    "See the engine's log; try again.",
                    None,
                )
            )

    try:
        engine.start().add_done_callback(log_resumed)
        exams.start()
        replies.put(_Ready(os.getpid()))
        while not stop.is_set():
            try:
                command = commands.get(timeout=1)
            except queue.Empty:
                if os.getppid() != parent:
                    log.warning("loom up is gone; the engine process stops")
                    break
                continue
            if isinstance(command, _Stop):
                break
            if isinstance(command, _Submit):
                engine.submit(command.workspace_id, command.run_id)
            elif isinstance(command, _Report):
                engine.report(command.workspace_id, command.run_id, command.finished)
            else:
                cancels.submit(cancel, command)
    finally:
        exams.stop()
        engine.stop()
        cancels.shutdown(wait=False, cancel_futures=True)
        db.close()
