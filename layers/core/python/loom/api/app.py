"""App factory: the whole API locally, or one router group per Lambda function on AWS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from loom import __version__
from loom.api.errors import install_error_handlers
from loom.api.routes import public
from loom.db import Database

ALL_ROUTERS: tuple[APIRouter, ...] = (public.router,)


def create_app(
    db_factory: Callable[[], Database],
    *,
    routers: Sequence[APIRouter] = ALL_ROUTERS,
) -> FastAPI:
    """Build an app holding ``routers``.

    ``db_factory`` is called once at start-up; whoever made the database closes it (``loom
    up`` shares it with the engine, a Lambda keeps it for the life of the container).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.shutting_down = False
        app.state.db = db_factory()
        try:
            yield
        finally:
            app.state.shutting_down = True

    app = FastAPI(title="Loom API", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    return app
