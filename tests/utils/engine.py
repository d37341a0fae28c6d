"""Running workflows on the local engine in tests."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from loom.blobs import LocalBlobStore
from loom.db import Database
from loom.engine.advance import Advance, Engine
from loom.engine.runner import LocalRunner
from loom.engine.service import get_run, start_run
from loom.workflows.service import create_workflow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return loaded


@dataclass
class Harness:
    db: Database
    engine: Engine
    runner: LocalRunner
    workspace_id: UUID

    def save(self, definition: dict[str, Any]) -> UUID:
        return create_workflow(self.db, self.workspace_id, definition).workflow_id

    def start(self, definition: dict[str, Any], input: Any = None, **options: Any) -> UUID:
        workflow_id = self.save(definition)
        return start_run(self.db, self.workspace_id, workflow_id, input or {}, **options).run_id

    def run(self, definition: dict[str, Any], input: Any = None) -> Advance:
        run_id = self.start(definition, input)
        return asyncio.run(self.runner.drive(self.workspace_id, run_id))

    def nodes(self, run_id: UUID) -> dict[str, dict[str, Any]]:
        return {n["node_id"]: n for n in get_run(self.db, self.workspace_id, run_id).nodes}

    def events(self, run_id: UUID) -> list[dict[str, Any]]:
        with self.db.tenant(self.workspace_id) as conn:
            return conn.execute(
                "SELECT seq, type, node_id, data FROM run_events WHERE run_id = %s ORDER BY seq",
                (run_id,),
            ).fetchall()


def harness(db: Database, workspace_id: UUID, blob_dir: Path, **engine_options: Any) -> Harness:
    engine = Engine(db, LocalBlobStore(blob_dir), **engine_options)
    return Harness(db, engine, LocalRunner(engine, per_run_limit=32), workspace_id)
