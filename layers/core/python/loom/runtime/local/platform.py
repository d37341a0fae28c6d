"""The local platform in one object: database, blob store, engine, runner, workspace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from loom.blobs import LocalBlobStore
from loom.config import Settings
from loom.db import Database, connect
from loom.engine.advance import Engine
from loom.engine.runner import LocalRunner
from loom.engine.service import StartedRun, start_run
from loom.llm.gateway import LlmGateway
from loom.runtime.local.workspace import local_workspace
from loom.secrets.vault import vault_for


@dataclass
class LocalPlatform:
    settings: Settings
    db: Database
    engine: Engine
    runner: LocalRunner
    workspace_id: UUID

    def start(self, workflow_id: UUID, input: Any, **options: Any) -> StartedRun:
        options.setdefault("max_input_bytes", self.settings.max_input_bytes)
        return start_run(self.db, self.workspace_id, workflow_id, input, **options)


def build_engine(settings: Settings, db: Database) -> tuple[Engine, LocalRunner]:
    blobs = LocalBlobStore(settings.home.resolve() / "blobs")
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
    return engine, runner


@asynccontextmanager
async def local_platform(settings: Settings) -> AsyncIterator[LocalPlatform]:
    db = await asyncio.to_thread(connect, settings)
    try:
        engine, runner = build_engine(settings, db)
        workspace_id = await asyncio.to_thread(local_workspace, db, settings.home)
        yield LocalPlatform(settings, db, engine, runner, workspace_id)
    finally:
        db.close()
