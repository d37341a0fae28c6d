"""One Lambda container's wiring: settings, database, blobs, engine and the runner that
executes nodes, built on the first invocation and kept for the container's life."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from loom.blobs import BlobStore, blob_store_for
from loom.config import Settings, get_settings
from loom.db import Database
from loom.engine.advance import Engine
from loom.engine.runner import LocalRunner
from loom.llm.gateway import LlmGateway
from loom.runtime.aws.rds import database_for
from loom.secrets.vault import vault_for

T = TypeVar("T")


@dataclass
class AwsPlatform:
    settings: Settings
    db: Database
    blobs: BlobStore
    engine: Engine
    runner: LocalRunner
    # One loop per container: asyncio objects a node keeps between invocations stay valid.
    loop: asyncio.AbstractEventLoop

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)


def build_platform(settings: Settings) -> AwsPlatform:
    db = database_for(settings, max_size=settings.pool_max_size).open()
    if settings.schedule_group:  # this function deploys: CRON triggers get schedules
        from loom.runtime.aws.schedules import install

        install(settings)
    blobs = blob_store_for(settings)
    engine = Engine(db, blobs, output_threshold=settings.output_threshold_bytes)
    vault = vault_for(settings)
    runner = LocalRunner(
        engine,
        per_run_limit=settings.run_concurrency,
        global_limit=settings.engine_concurrency,
        vault=vault,
        base_url=settings.base_url,
        llm=LlmGateway(db, settings=settings, vault=vault),
    )
    if settings.code_function:
        from loom.nodes import code
        from loom.runtime.aws.code import LambdaCodeRunner

        code.RUNNER = LambdaCodeRunner(settings.code_function)
    return AwsPlatform(settings, db, blobs, engine, runner, asyncio.new_event_loop())


@cache
def current_platform() -> AwsPlatform:
    """This container's platform; an invalid environment raises ``ConfigError`` here, on
    the first invocation, rather than at import."""
    return build_platform(get_settings())


def with_platform(
    handle: Callable[[AwsPlatform, Mapping[str, Any]], Any],
) -> Callable[[Mapping[str, Any]], Any]:
    """``handle`` given this container's platform (built on the first invocation)."""

    def bound(event: Mapping[str, Any]) -> Any:
        return handle(current_platform(), event)

    return bound
