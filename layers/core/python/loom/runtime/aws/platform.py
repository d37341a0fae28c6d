"""One Lambda container's wiring: settings, database, blobs and engine, built on the first
invocation and kept for the container's life; the runner that executes nodes is built on
first use, by the functions that execute nodes (``loom.runtime.aws.runner``), with the model
gateway only in the functions that call models."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from loom.blobs import BlobStore, blob_store_for
from loom.config import Settings, get_settings
from loom.db import Database
from loom.engine.advance import Engine
from loom.runtime.aws.rds import database_for

if TYPE_CHECKING:
    from loom.engine.runner import LocalRunner

T = TypeVar("T")


@dataclass
class AwsPlatform:
    settings: Settings
    db: Database
    blobs: BlobStore
    engine: Engine
    # One loop per container: asyncio objects a node keeps between invocations stay valid.
    loop: asyncio.AbstractEventLoop

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    @cached_property
    def runner(self) -> LocalRunner:
        """Executes nodes without models: the node functions but AI_AGENT's."""
        # Imported here, not above: the functions that execute nodes import it with their
        # module (loom.runtime.aws.nodes, functions/workers/exams.py); the others never do.
        from loom.runtime.aws.runner import build_runner

        return build_runner(self, models=False)

    @cached_property
    def model_runner(self) -> LocalRunner:
        """Executes nodes with the model gateway and the agent runtime: the model callers
        (AI_AGENT nodes, exams), the only functions with the llm layer."""
        from loom.runtime.aws.runner import build_runner

        return build_runner(self, models=True)


def build_platform(settings: Settings) -> AwsPlatform:
    db = database_for(settings, max_size=settings.pool_max_size).open()
    if settings.schedule_group:  # this function deploys: CRON triggers get schedules
        from loom.runtime.aws.schedules import install

        install(settings)
    blobs = blob_store_for(settings)
    engine = Engine(db, blobs, output_threshold=settings.output_threshold_bytes)
    return AwsPlatform(settings, db, blobs, engine, asyncio.new_event_loop())


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
