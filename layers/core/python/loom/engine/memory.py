"""``loom.nodes.base.AgentMemory`` over the database, for one run's workspace."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from loom.db import Database
from loom.db import memory as repo
from loom.nodes.base import Turn


class WorkspaceMemory:
    def __init__(self, db: Database, workspace_id: UUID, run_id: UUID | None) -> None:
        self._db = db
        self._workspace_id = workspace_id
        self._run_id = run_id

    async def conversation(self, key: str, limit: int) -> tuple[str | None, list[Turn]]:
        return await asyncio.to_thread(self._conversation, key, limit)

    async def add_turns(self, key: str, turns: Sequence[tuple[str, str]]) -> None:
        def add() -> None:
            with self._db.tenant(self._workspace_id) as conn:
                repo.append_turns(conn, self._workspace_id, key, list(turns), self._run_id)

        await asyncio.to_thread(add)

    async def save_summary(self, key: str, summary: str, through: int) -> None:
        def save() -> None:
            with self._db.tenant(self._workspace_id) as conn:
                repo.save_summary(conn, self._workspace_id, key, summary, through)

        await asyncio.to_thread(save)

    async def remember(
        self, collection: str, content: str, embedding: list[float], metadata: dict[str, Any]
    ) -> str:
        def add() -> str:
            with self._db.tenant(self._workspace_id) as conn:
                found = repo.add_vector(
                    conn, self._workspace_id, collection, content, embedding, metadata, self._run_id
                )
            return str(found)

        return await asyncio.to_thread(add)

    async def search(
        self, collection: str, embedding: list[float], limit: int
    ) -> list[dict[str, Any]]:
        def find() -> list[dict[str, Any]]:
            with self._db.tenant(self._workspace_id) as conn:
                rows = repo.search_vectors(conn, collection, embedding, limit)
            return [
                {
                    "id": str(r["id"]),
                    "content": r["content"],
                    "metadata": r["metadata"],
                    "score": round(float(r["score"]), 4),
                }
                for r in rows
            ]

        return await asyncio.to_thread(find)

    def _conversation(self, key: str, limit: int) -> tuple[str | None, list[Turn]]:
        with self._db.tenant(self._workspace_id) as conn:
            summary = repo.summary(conn, key)
            rows = repo.recent_turns(conn, key, limit)
        return summary, [Turn(int(r["id"]), r["role"], r["content"]) for r in rows]
