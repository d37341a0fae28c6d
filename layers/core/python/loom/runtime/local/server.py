"""``loom up``: the embedded database, migrations and the API on 127.0.0.1."""

from __future__ import annotations

import errno
import logging
import signal
import socket
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import uvicorn

from loom.api.app import create_app
from loom.config import Settings
from loom.db import Database, connect
from loom.db.urls import as_url
from loom.engine.advance import Advance
from loom.errors import LoomError
from loom.runtime.local.engine_thread import EngineThread
from loom.runtime.local.exams import ExamWorker
from loom.runtime.local.platform import build_engine
from loom.runtime.local.triggers import LocalTriggers

log = logging.getLogger(__name__)


class PortInUse(LoomError):
    code = "port_in_use"


@dataclass(frozen=True)
class Endpoints:
    api: str
    docs: str
    database: str
    data_dir: str | None


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"Port {port} on {host} is already in use.",
                    solution=f"Stop the process using it, or choose another port: "
                    f"`loom up --port {port + 1}`.",
                ) from None
            raise LoomError(
                f"Cannot listen on {host}:{port}: {exc.strerror}.",
                solution="Choose another address with --host or port with --port.",
            ) from None


def serve(settings: Settings, *, on_ready: Callable[[Endpoints], None]) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    host, port = settings.api_host, settings.api_port
    ensure_port_free(host, port)
    db: Database = connect(settings)
    _, runner = build_engine(settings, db)
    engine_thread = EngineThread(runner, deadline_sweep_seconds=settings.hil_sweep_seconds)
    triggers = LocalTriggers(settings, db, engine_thread)
    exams = ExamWorker(settings, db)
    try:
        app = create_app(lambda: db, settings=settings, dispatcher=engine_thread)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=10,
            # Loom decides which forwarded addresses to trust (LOOM_TRUSTED_PROXIES), and
            # logs requests itself without query strings.
            proxy_headers=False,
            access_log=False,
        )
        server = uvicorn.Server(config)
        base = f"http://{host}:{port}"
        on_ready(
            Endpoints(
                api=base,
                docs=f"{base}/docs",
                database=as_url(db.urls.owner),
                data_dir=str(settings.pg_data_dir) if db.urls.embedded else None,
            )
        )
        resumed = engine_thread.start()
        resumed.add_done_callback(_log_resumed)
        triggers.start()
        exams.start()
        _run_until_stopped(server)
    finally:
        exams.stop()
        triggers.stop()
        engine_thread.stop()
        db.close()


def _log_resumed(done: Future[list[Advance]]) -> None:
    if done.cancelled():
        return
    error = done.exception()
    if error is not None:
        log.error("resuming runs failed: %s", error)
    else:
        log.info("resumed runs settled: %d", len(done.result()))


class _Stopped(Exception):
    """SIGTERM, turned into an exception so shutdown runs our cleanup too."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _run_until_stopped(server: uvicorn.Server) -> None:
    """uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal;
    after a graceful shutdown either one is a normal stop."""
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        server.run()
    except (KeyboardInterrupt, _Stopped):
        log.info("stopped by signal")
    finally:
        signal.signal(signal.SIGTERM, previous)
