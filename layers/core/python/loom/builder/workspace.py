"""What a workspace holds that a draft may refer to: credentials (name and type, never
secrets), agents and workflows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from loom.db import builder as repo
from loom.db.database import Conn


@dataclass(frozen=True)
class Resources:
    credentials: list[dict[str, Any]] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    workflows: list[dict[str, Any]] = field(default_factory=list)

    def credentials_of(self, kind: str) -> list[dict[str, Any]]:
        return [c for c in self.credentials if c["type"] == kind]

    def workflow_ids(self) -> set[str]:
        return {w["id"] for w in self.workflows}


def load_resources(conn: Conn) -> Resources:
    def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: str(v) if isinstance(v, UUID) else v for k, v in r.items()} for r in rows]

    return Resources(
        credentials=plain(repo.credentials_for_drafts(conn)),
        agents=plain(repo.agents_for_drafts(conn)),
        workflows=plain(repo.workflows_for_drafts(conn)),
    )
