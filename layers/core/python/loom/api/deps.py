"""Dependencies shared by the routers: the database, the settings, the caller, and the
engine runs are handed to.

All are ``async``, so FastAPI calls them on the event loop instead of sending each to
the thread pool: authentication awaits the database on the app's ``AsyncDatabase``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from loom.auth.principal import Principal, Role
from loom.config import Settings
from loom.db import Database
from loom.db.async_database import AsyncDatabase
from loom.errors import DatabaseUnavailable, NotImplementedYet

if TYPE_CHECKING:
    from loom.engine.dispatch import RunDispatcher


async def get_db(request: Request) -> Database:
    db: Database | None = getattr(request.app.state, "db", None)
    if db is None:
        raise DatabaseUnavailable("The database is not connected.", solution="Retry shortly.")
    return db


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_async_db(request: Request) -> AsyncDatabase:
    adb: AsyncDatabase | None = getattr(request.app.state, "adb", None)
    if adb is None:
        raise DatabaseUnavailable("The database is not connected.", solution="Retry shortly.")
    return adb


DatabaseDep = Annotated[Database, Depends(get_db)]
AsyncDatabaseDep = Annotated[AsyncDatabase, Depends(get_async_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_principal(request: Request) -> Principal:
    """The caller, from its bearer token or API key; 401 without a valid one. Reads the
    app's state itself rather than through sub-dependencies: it runs on every request."""
    from loom.auth.authenticate import authenticate_request

    state = request.app.state
    return await authenticate_request(
        request, await get_db(request), await get_async_db(request), state.settings
    )


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def allow(role: Role, scope: str) -> Any:
    """A dependency admitting users with at least ``role`` and API keys with ``scope``."""

    async def check(principal: CurrentPrincipal) -> Principal:
        principal.require(role=role, scope=scope)
        return principal

    checker: Callable[[Principal], Awaitable[Principal]] = check
    return Depends(checker)


def dispatcher(request: Request) -> RunDispatcher:
    """The engine this API hands runs to (see ``loom.engine.dispatch``)."""
    found: RunDispatcher | None = getattr(request.app.state, "dispatcher", None)
    if found is None:
        raise NotImplementedYet(
            "This API has no engine to run workflows.",
            solution="Run `loom up`, which hosts the local engine.",
        )
    return found
