"""Episodes as people see them: listed per agent, read one by one, and given feedback.

Feedback (a rating from -1 to 5 and an optional correction) is stored with the episode;
readiness counts it, and recall shows a correction the next time the agent meets a
similar input."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from loom.agents.registry import require
from loom.db import Database
from loom.db import agents as repo
from loom.errors import NotFound

MAX_CORRECTION_CHARS = 10_000


def list_episodes(
    db: Database, workspace_id: UUID, agent_id: UUID, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        require(conn, agent_id)
        return repo.list_episodes(conn, agent_id, limit=limit, offset=offset)


def get_episode(db: Database, workspace_id: UUID, episode_id: UUID) -> dict[str, Any]:
    with db.tenant(workspace_id) as conn:
        row = repo.get_episode(conn, episode_id)
    if row is None:
        raise _not_found(episode_id)
    return row


def give_feedback(
    db: Database, workspace_id: UUID, episode_id: UUID, rating: int, correction: str | None
) -> dict[str, Any]:
    """Store (or replace) the episode's feedback."""
    with db.tenant(workspace_id) as conn:
        row = repo.set_feedback(conn, episode_id, rating, correction)
    if row is None:
        raise _not_found(episode_id)
    return row


def _not_found(episode_id: UUID) -> NotFound:
    return NotFound(f"Episode {episode_id} not found.", solution="Check the episode id.")
