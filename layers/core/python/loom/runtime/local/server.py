"""``loom up``: the embedded database, migrations and the API on 127.0.0.1, the triggers,
and the engine (with the exam worker) in a process of its own."""

from __future__ import annotations

import errno
import gc
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn

from loom.api.app import create_app
from loom.config import Settings
from loom.db import Database, connect
from loom.db.urls import as_url
from loom.errors import LoomError
from loom.runtime.local.engine_process import EngineProcess
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
    engine = EngineProcess(settings, db.urls)
    triggers = LocalTriggers(settings, db, engine)
    try:
        app = create_app(lambda: db, settings=settings, dispatcher=engine)
        app.state.engine_state = lambda: engine.state
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
        engine.start()
        triggers.start()
        # What start-up made (modules, routes, the app) lives as long as the process: kept
        # out of the collector's generations, it is not rescanned by every full collection,
        # which otherwise lands on a request's latency.
        gc.collect()
        gc.freeze()
        _run_until_stopped(server)
    finally:
        triggers.stop()
        engine.stop()
        db.close()


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
