"""Long-term recall: an agent's past episodes, found by meaning.

When an episode ends, a short summary of it (input, outcome, answer) is embedded and kept
with it (pgvector, HNSW). Before an execution, the agent's nearest past episodes and any
corrections people gave them are put into its context, within a token budget (about four
characters a token); what was recalled is recorded in the episode.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from loom.db import Database
from loom.db import agents as repo

CHARS_PER_TOKEN = 4
SUMMARY_CHARS = 600
# Cosine distance beyond which a past episode is not about the same thing.
MAX_DISTANCE = 0.75


@dataclass(frozen=True)
class Recalled:
    episode_id: UUID
    distance: float
    summary: str
    correction: str | None
    rating: int | None

    def record(self) -> dict[str, Any]:
        return {
            "episode_id": str(self.episode_id),
            "distance": round(self.distance, 4),
            "summary": self.summary,
            "correction": self.correction,
            "rating": self.rating,
        }

    def text(self) -> str:
        line = f"- {self.summary}"
        if self.correction:
            line += f"\n  A person corrected this: {self.correction}"
        elif self.rating is not None and self.rating <= 0:
            line += "\n  A person rated this answer as bad."
        return line


def summarize(prompt: str, outcome: str, answer: str) -> str:
    """What recall shows of an episode: deterministic, no model call."""
    text = f"Asked: {_squash(prompt)} | Outcome: {outcome} | Answered: {_squash(answer)}"
    return text[:SUMMARY_CHARS]


async def recall(
    db: Database,
    workspace_id: UUID,
    agent_id: UUID,
    embedding: list[float],
    *,
    limit: int,
    token_budget: int,
) -> list[Recalled]:
    """The nearest past episodes that fit in ``token_budget``, nearest first; those with
    a correction come before those without at the same rank."""
    rows = await asyncio.to_thread(_nearest, db, workspace_id, agent_id, embedding, limit * 3)
    found = [
        Recalled(
            episode_id=r["id"],
            distance=float(r["distance"]),
            summary=r["summary"] or "",
            correction=r["feedback_correction"],
            rating=r["feedback_rating"],
        )
        for r in rows
        if r["distance"] is not None and float(r["distance"]) <= MAX_DISTANCE
    ]
    found.sort(key=lambda r: (r.correction is None, r.distance))
    chosen: list[Recalled] = []
    budget = token_budget * CHARS_PER_TOKEN
    for item in found[:limit]:
        size = len(item.text())
        if size > budget:
            continue
        budget -= size
        chosen.append(item)
    return chosen


def context_message(recalled: list[Recalled]) -> dict[str, Any]:
    lines = "\n".join(r.text() for r in recalled)
    return {
        "role": "system",
        "content": "Relevant past episodes of yours, with what people said about them. "
        "Follow their corrections:\n" + lines,
    }


def _nearest(
    db: Database, workspace_id: UUID, agent_id: UUID, embedding: list[float], limit: int
) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        return repo.recall(conn, agent_id, embedding, limit)


def _squash(text: str) -> str:
    return " ".join(text.split())[:250]
