"""Human-in-the-loop requests: filed by the HUMAN_IN_THE_LOOP node, answered once (by a
member, or through the one-time link), or timed out by the engine's sweep. Each outcome is
a report that completes the waiting node, which the caller hands to the engine."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from loom.db import Database
from loom.db import hil as repo
from loom.engine.run_state import Finished
from loom.engine.values import find_nul
from loom.errors import Conflict, InvalidInput, NotFound, ValidationFailed
from loom.nodes.base import HumanRequest
from loom.workflows.definition import TIMEOUT_PORT

MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """A settled request. ``finished`` completes the waiting node; a tool approval has
    none (its agent is watching the request) and may have no run."""

    workspace_id: UUID
    request_id: UUID
    run_id: UUID | None
    status: str
    finished: Finished | None

    def node_report(self) -> tuple[UUID, Finished] | None:
        """(run, report) for the engine when this answer completes a waiting node."""
        if self.finished is None or self.run_id is None:
            return None
        return self.run_id, self.finished


class HilDesk:
    """``loom.nodes.base.HumanDesk`` over the database, for one workspace."""

    def __init__(
        self, db: Database, workspace_id: UUID, base_url: str, task_token: str | None = None
    ) -> None:
        self._db = db
        self._workspace_id = workspace_id
        self._base_url = base_url
        # On AWS: the waiting execution's task token, stored with the request it answers.
        self._task_token = task_token

    @property
    def base_url(self) -> str:
        return self._base_url

    async def file(self, node_run_id: UUID, run_id: UUID, request: HumanRequest) -> UUID:
        return await asyncio.to_thread(self._file, node_run_id, run_id, request)

    async def withdraw(self, request_id: UUID) -> None:
        await asyncio.to_thread(self._withdraw, request_id)

    def _file(self, node_run_id: UUID, run_id: UUID, request: HumanRequest) -> UUID:
        with self._db.tenant(self._workspace_id) as conn:
            return repo.file_request(
                conn,
                workspace_id=self._workspace_id,
                run_id=run_id,
                node_run_id=node_run_id,
                kind=request.kind,
                request=dict(request.request),
                channels=list(request.channels),
                timeout_action=request.timeout_action,
                expires_at=request.expires_at,
                link_token_hash=request.link_token_hash,
                task_token=self._task_token,
            )

    def _withdraw(self, request_id: UUID) -> None:
        with self._db.tenant(self._workspace_id) as conn:
            repo.withdraw(conn, request_id)


def link_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
    """Validate and record the one response a request may get (a second one is a conflict
    and changes nothing); return the report that completes the waiting node."""
    with db.tenant(workspace_id) as conn:
        pending = _pending(repo.get_request(conn, request_id), request_id)
        via = "member" if responded_by else "link"
        status, output, port = _response(pending, approved, data, responded_by, via)
        row = repo.claim_response(conn, request_id, status, output, responded_by)
    if row is None:
        raise _answered(request_id, "answered meanwhile")
    finished = None
    if row["kind"] != "tool_approval":
        finished = Finished(row["node_id"], row["attempt"], "completed", output=output, port=port)
    return Answer(workspace_id, request_id, row["run_id"], status, finished)


def find_link(db: Database, token: str) -> tuple[UUID, dict[str, Any]]:
    """The workspace and request a one-time respond link names."""
    with db.system() as conn:
        located = repo.locate_link(conn, link_token_hash(token))
    if located is None:
        raise NotFound(
            "This respond link is not valid.",
            solution="Use the latest link sent for the request; a retried request sends a new one.",
        )
    workspace_id: UUID = located["workspace_id"]
    with db.tenant(workspace_id) as conn:
        row = repo.get_request(conn, located["request_id"])
    if row is None:
        raise NotFound("This respond link is not valid.", solution="Ask for a new request.")
    return workspace_id, row


def respond_by_link(db: Database, token: str, *, approved: bool | None, data: Any) -> Answer:
    workspace_id, row = find_link(db, token)
    return respond(db, workspace_id, row["id"], approved=approved, data=data, responded_by=None)


def expire_overdue(db: Database, now: datetime, *, limit: int = 100) -> list[Answer]:
    """Time out pending requests whose deadline has passed, each by its timeout action."""
    with db.system() as conn:
        due = repo.locate_overdue(conn, now, limit)
    answers = []
    for item in due:
        with db.tenant(item["workspace_id"]) as conn:
            row = repo.time_out(conn, item["request_id"], now)
        if row is not None and row["kind"] != "tool_approval":
            answer = Answer(
                item["workspace_id"], row["id"], row["run_id"], "timed_out", _timeout(row)
            )
            answers.append(answer)
    return answers


def _pending(row: dict[str, Any] | None, request_id: UUID) -> dict[str, Any]:
    if row is None:
        raise NotFound(f"Request {request_id} not found.", solution="Check the request id.")
    if row["status"] != "pending":
        raise _answered(request_id, row["status"])
    return row


def _answered(request_id: UUID, status: str) -> Conflict:
    return Conflict(
        f"Request {request_id} is no longer open ({status}).",
        solution="Nothing to do: the first response (or the timeout) stands.",
    )


def _response(
    row: dict[str, Any], approved: bool | None, data: Any, by: UUID | None, via: str
) -> tuple[str, Any, str]:
    """(status, node output, port) for a valid answer to ``row``."""
    _check_size(data)
    if row["kind"] in ("approval", "tool_approval"):
        if approved is None:
            raise InvalidInput(
                "An approval needs a decision.",
                solution='Send {"approved": true} or {"approved": false}, with optional "data".',
            )
        output = {"approved": approved, "data": data, "responded_by": by and str(by), "via": via}
        return ("approved", output, "approve") if approved else ("rejected", output, "reject")
    if approved is not None:
        raise InvalidInput(
            "This request asks for input, not a decision.",
            solution='Send the answer as "data", matching the request\'s form.',
        )
    check_form_answer(row["request"].get("form") or {}, data)
    return "responded", data, "main"


def check_form_answer(form: dict[str, Any], data: Any) -> None:
    """``data`` against the request's form (a JSON Schema); every problem is listed."""
    # Only answers to forms need jsonschema; the runner and the timeout function, which
    # import this module too, never check one.
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(form).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        raise ValidationFailed(
            f"The answer does not match the form ({len(errors)} problem(s)).",
            solution="Fix every field listed in details and send it again.",
            details=[
                {"path": ".".join(["data", *(str(p) for p in e.path)]), "message": e.message}
                for e in errors
            ],
        )


def _check_size(data: Any) -> None:
    try:
        size = len(json.dumps(data, allow_nan=False).encode())
    except ValueError:
        raise InvalidInput("The answer is not valid JSON.", solution="Send JSON.") from None
    if size > MAX_RESPONSE_BYTES:
        raise InvalidInput(
            f"The answer is {size} bytes; at most {MAX_RESPONSE_BYTES} are accepted.",
            solution="Send less, or a link to the rest.",
        )
    nul = find_nul(data, "data")
    if nul is not None:
        raise InvalidInput(f"The answer has a NUL character at {nul}.", solution="Remove it.")


def report_for(row: dict[str, Any]) -> Finished | None:
    """The report a settled request gives its node (None while it is pending, or when it
    was withdrawn): the answer that won, or its timeout action."""
    node_id, attempt, output = row["node_id"], row["attempt"], row["response"]
    if row["status"] in ("approved", "rejected"):
        port = "approve" if row["status"] == "approved" else "reject"
        return Finished(node_id, attempt, "completed", output=output, port=port)
    if row["status"] == "responded":
        return Finished(node_id, attempt, "completed", output=output, port="main")
    if row["status"] == "timed_out":
        return _timeout(row)
    return None


def _timeout(row: dict[str, Any]) -> Finished:
    """The report for a request nobody answered in time, by its timeout action."""
    node_id, attempt, request = row["node_id"], row["attempt"], row["request"]
    if row["timeout_action"] == "route":
        output = {"timed_out": True, "request_id": str(row["id"])}
        return Finished(node_id, attempt, "completed", output=output, port=TIMEOUT_PORT)
    if row["timeout_action"] == "continue":
        default = request.get("default")
        if row["kind"] == "approval":
            approved = default == "approve"
            output = {"approved": approved, "data": None, "responded_by": None, "via": "timeout"}
            port = "approve" if approved else "reject"
            return Finished(node_id, attempt, "completed", output=output, port=port)
        return Finished(node_id, attempt, "completed", output=default, port="main")
    error = {
        "code": "hil_timed_out",
        "retryable": False,
        "message": f"Nobody answered request {row['id']} before {row['expires_at'].isoformat()}.",
        "solution": "Answer sooner, lengthen timeout_seconds, or set timeout_action to "
        "continue or route.",
    }
    return Finished(node_id, attempt, "failed", error=error)
