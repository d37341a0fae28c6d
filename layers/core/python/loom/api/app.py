"""App factory: the whole API locally, or one router group per Lambda function on AWS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from loom import __version__
from loom.api.errors import install_error_handlers
from loom.api.middleware import install_middleware
from loom.api.routes import (
    agent_chat,
    agent_exams,
    agents,
    api_keys,
    auth,
    builder,
    credentials,
    hil,
    mcp,
    nodes,
    public,
    runs,
    triggers,
    workflows,
    workspaces,
)
from loom.config import Settings, get_settings
from loom.db import Database
from loom.engine.dispatch import RunDispatcher

ALL_ROUTERS: tuple[APIRouter, ...] = (
    public.router,
    workflows.router,
    runs.router,
    nodes.router,
    auth.router,
    workspaces.router,
    api_keys.router,
    credentials.router,
    hil.router,
    hil.links,
    triggers.router,
    triggers.hooks,
    mcp.router,
    agents.router,
    agents.episode_router,
    agent_chat.router,
    agent_chat.threads,
    agent_exams.router,
    builder.router,
    builder.explain_router,
)


def create_app(
    db_factory: Callable[[], Database],
    *,
    settings: Settings | None = None,
    dispatcher: RunDispatcher | None = None,
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
    app.state.settings = settings or get_settings()
    app.state.dispatcher = dispatcher
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    install_middleware(app, app.state.settings)
    return app
