"""App factory: the whole API locally, or one router group per Lambda function on AWS.

Building an app imports no route module: the caller's routers, or ``loom.api.routers``
when it names none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI

from loom import __version__
from loom.api.errors import install_error_handlers
from loom.api.middleware import install_middleware
from loom.config import Settings, get_settings
from loom.db import Database

if TYPE_CHECKING:
    from loom.db.async_database import AsyncDatabase
    from loom.engine.dispatch import RunDispatcher


def __getattr__(name: str) -> tuple[APIRouter, ...]:
    """``ALL_ROUTERS``, still importable from here (it lives in ``loom.api.routers``)."""
    if name == "ALL_ROUTERS":
        from loom.api.routers import ALL_ROUTERS

        return ALL_ROUTERS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_app(
    db_factory: Callable[[], Database],
    *,
    settings: Settings | None = None,
    dispatcher: RunDispatcher | None = None,
    routers: Sequence[APIRouter] | None = None,
) -> FastAPI:
    """Build an app holding ``routers`` (default: the whole API, ``loom.api.routers``).

    ``db_factory`` is called once at start-up; whoever made the database closes it (``loom
    up`` shares it with the engine, a Lambda keeps it for the life of the container). The
    pool for coroutines beside it belongs to the app (see ``start_serving``).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start_serving(app)
        try:
            yield
        except asyncio.CancelledError:
            # A second Ctrl-C: uvicorn exits without the lifespan's shutdown and tears the
            # loop down under it. The pools' sockets close with the process; what is left
            # to say is said by ``loom up`` ("Loom stopped."), not by a traceback.
            with suppress(asyncio.CancelledError):
                await stop_serving(app)
        else:
            await stop_serving(app)

    app = FastAPI(title="Loom API", version=__version__, lifespan=lifespan)
    app.state.db_factory = db_factory
    app.state.settings = settings or get_settings()
    app.state.dispatcher = dispatcher
    install_error_handlers(app)
    if routers is None:
        # The whole API (``loom up``, tests) imports every route module; a Lambda function
        # passes its own routers and must not import the others (agents, builder, MCP...).
        from loom.api.routers import ALL_ROUTERS

        routers = ALL_ROUTERS
    for router in routers:
        app.include_router(router)
    install_middleware(app, app.state.settings)
    return app


async def start_serving(app: FastAPI) -> None:
    """Start-up: the database, and a pool for coroutines beside it on the running loop
    (``loom.db.async_database``). A Lambda runs this once per container, not per
    invocation, so its connections outlive each request."""
    app.state.shutting_down = False
    db: Database = app.state.db_factory()
    app.state.db = db
    app.state.adb = await db.beside().open()


async def stop_serving(app: FastAPI) -> None:
    app.state.shutting_down = True
    adb: AsyncDatabase | None = getattr(app.state, "adb", None)
    if adb is not None:
        app.state.adb = None
        await adb.close()
