"""What travels through the state machine: ready items out of Advance, reports back in.

Everything stays small. An item names a node run, how the state machine treats it
(``mode``: ``task``, ``human`` or ``wait``), the function that runs it and the time to wait
before it. A report is a ``Finished`` as JSON; one larger than the round's inline budget is
staged in the blob store and travels by key; a Lambda that failed (timeout, out of memory,
throttled past its retries) comes back as its item merged with the ``Error`` and ``Cause``
Step Functions caught, and becomes that node's failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from loom.blobs import BlobStore, blob_key
from loom.engine.run_state import Finished

# What Step Functions says when a Lambda runs out of time or memory: named in the failure.
_LAMBDA_REASONS = {
    "Sandbox.Timedout": ("function_timeout", "ran out of time"),
    "Runtime.OutOfMemory": ("function_out_of_memory", "ran out of memory"),
}


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as Step Functions' Wait state wants it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def report_json(finished: Finished) -> dict[str, Any]:
    found: dict[str, Any] = {
        "node_id": finished.node_id,
        "attempt": finished.attempt,
        "outcome": finished.outcome,
        "output": finished.output,
        "port": finished.port,
    }
    if finished.error is not None:
        found["error"] = dict(finished.error)
    if finished.metadata:
        found["metadata"] = dict(finished.metadata)
    if finished.resume_token_hash is not None:
        found["resume_token_hash"] = finished.resume_token_hash
    if finished.expires_at is not None:
        found["expires_at"] = finished.expires_at.isoformat()
    if finished.duration_ms is not None:
        found["duration_ms"] = finished.duration_ms
    return found


def finished_from(data: Mapping[str, Any]) -> Finished:
    expires = data.get("expires_at")
    return Finished(
        node_id=str(data["node_id"]),
        attempt=int(data["attempt"]),
        outcome=data["outcome"],
        output=data.get("output"),
        port=str(data.get("port") or "main"),
        error=data.get("error"),
        metadata=data.get("metadata") or {},
        resume_token_hash=data.get("resume_token_hash"),
        expires_at=datetime.fromisoformat(expires) if expires else None,
        duration_ms=data.get("duration_ms"),
    )


def stage(
    finished: Finished, inline_bytes: int, blobs: BlobStore, workspace_id: UUID, run_id: UUID
) -> dict[str, Any]:
    """The report as it travels: inline when it fits ``inline_bytes``, else by key."""
    report = report_json(finished)
    data = json.dumps(report, separators=(",", ":")).encode()
    if len(data) <= inline_bytes:
        return report
    name = f"{finished.node_id}-{finished.attempt}.report.json"
    stored = blobs.put(workspace_id, blob_key(workspace_id, "runs", str(run_id), name), data)
    return {"node_id": finished.node_id, "attempt": finished.attempt, "staged": stored.key}


def unstage(report: Mapping[str, Any], blobs: BlobStore, workspace_id: UUID) -> Finished:
    """A report back from the state machine, whichever way it travelled."""
    if "staged" in report:
        return finished_from(json.loads(blobs.get(workspace_id, str(report["staged"]))))
    if "Error" in report:
        return lambda_failure(report)
    return finished_from(report)


def lambda_failure(caught: Mapping[str, Any]) -> Finished:
    """A node's function failed as a Lambda (not as a node): retryable, with the reason."""
    error_name = str(caught.get("Error", "Lambda.Unknown"))
    code, what = _LAMBDA_REASONS.get(error_name, ("function_failed", "failed"))
    cause = _cause(caught.get("Cause"))
    error = {
        "code": code,
        "retryable": True,
        "message": f"The function running node '{caught['node_id']}' {what} "
        f"({error_name}): {cause}"[:2000],
        "solution": "Give the node's function more time or memory, or make the node do less.",
    }
    return Finished(str(caught["node_id"]), int(caught["attempt"]), "failed", error=error)


def _cause(raw: Any) -> str:
    """Lambda's cause is often JSON with an errorMessage; keep the message."""
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            return str(parsed["errorMessage"])
    return str(raw)


def stale(node_id: str, attempt: int) -> Finished:
    """A report for a delivery that came too late (the run moved on): advance ignores it."""
    error = {
        "code": "stale_delivery",
        "retryable": False,
        "message": f"Node '{node_id}' attempt {attempt} no longer runs.",
        "solution": "Nothing to do: the run moved on.",
    }
    return Finished(node_id, attempt, "failed", error=error)
