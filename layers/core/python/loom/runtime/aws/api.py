"""API Gateway → Lambda: one router group per function, wrapped by Mangum.

The app, its settings and its database pools are built on the first invocation, not at
import, so a cold start pays only for what this function uses, and an invalid
environment fails that invocation with the reason instead of crashing the import. With
``LOOM_STATE_MACHINE_ARN`` set, runs go to Step Functions (``StepFunctionsDispatcher``).
Powertools logs, traces and metrics every invocation, correlated by API Gateway's request id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from loom.runtime.aws.entry import observed

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


# Powertools' correlation_paths.API_GATEWAY_HTTP, without importing Powertools here.
API_GATEWAY_HTTP = "requestContext.requestId"


def lambda_handler_for(*routers: APIRouter) -> Handler:
    built: list[Handler] = []

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not built:
            built.append(build_handler(routers))
        return built[0](event, context)

    name = "api:" + ",".join(sorted({r.prefix or "/" for r in routers}))
    wrapped: Handler = observed(name, handle, API_GATEWAY_HTTP)
    return wrapped


def build_handler(routers: tuple[APIRouter, ...]) -> Handler:
    """What a container builds on its first invocation: the app for ``routers`` (plus
    health), started once, under Mangum; before ``observed`` wraps it."""
    from mangum import Mangum

    from loom.api.app import create_app, start_serving
    from loom.api.routes import public
    from loom.config import get_settings
    from loom.db import Database
    from loom.runtime.aws.rds import database_for
    from loom.runtime.aws.schedules import install as install_schedules

    settings = get_settings()
    database = database_for(settings, max_size=2)
    install_schedules(settings)

    def open_database() -> Database:
        return database.open()

    dispatcher = None
    if settings.state_machine_arn:
        from loom.blobs import blob_store_for
        from loom.engine.advance import Engine
        from loom.runtime.aws.dispatcher import StepFunctionsDispatcher

        engine = Engine(database, blob_store_for(settings))
        dispatcher = StepFunctionsDispatcher(engine, settings)
    app = create_app(
        open_database, settings=settings, dispatcher=dispatcher, routers=(public.router, *routers)
    )
    # Mangum would run the app's lifespan around every invocation, opening and closing its
    # pools each time; it starts once per container instead, on the loop Mangum runs on.
    asyncio.get_event_loop().run_until_complete(start_serving(app))
    handler: Handler = Mangum(app, lifespan="off")
    return handler
