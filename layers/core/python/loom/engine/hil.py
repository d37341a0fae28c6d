"""Answering human-in-the-loop requests: one response each, then the waiting node carries
on with it as its output. The HIL node (which creates requests) builds on this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from loom.db import Database
from loom.db import hil as repo
from loom.engine.run_state import Finished
from loom.errors import Conflict, NotFound


@dataclass(frozen=True)
class Answer:
    run_id: UUID
    finished: Finished


def list_requests(
    db: Database, workspace_id: UUID, *, status: str | None, limit: int
) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as conn:
        return repo.list_requests(conn, status, limit)


def respond(
    db: Database,
    workspace_id: UUID,
    request_id: UUID,
    *,
    approved: bool | None,
    data: Any,
    responded_by: UUID | None,
) -> Answer:
    """Record the response (a second one is a conflict and changes nothing) and return the
    report that completes the waiting node: port ``approve``/``reject`` for approvals."""
    status = "responded" if approved is None else ("approved" if approved else "rejected")
    response = {"approved": approved, "data": data}
    with db.tenant(workspace_id) as conn:
        row = repo.claim_response(conn, request_id, status, response, responded_by)
        if row is None:
            existing = repo.get_request(conn, request_id)
    if row is None:
        if existing is None:
            raise NotFound(f"Request {request_id} not found.", solution="Check the request id.")
        raise Conflict(
            f"Request {request_id} was already answered ({existing['status']}).",
            solution="Nothing to do: the first response stands.",
        )
    port = "main" if approved is None else ("approve" if approved else "reject")
    finished = Finished(row["node_id"], row["attempt"], "completed", output=response, port=port)
    return Answer(row["run_id"], finished)
