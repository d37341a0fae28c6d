"""SQL for runs, node runs and run events.

The engine's hot path writes everything one ``advance`` changed (node runs, events, the
run row) in a single statement of data-modifying CTEs fed by one JSON parameter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncCursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from loom.db.async_database import AsyncConn
from loom.db.database import Conn

_RUN_COLUMNS = """
    id, workspace_id, workflow_id, workflow_version, status, input, output, output_ref, error,
    trigger, engine, idempotency_key, parent_run_id, parent_node_run_id, body_of, rerun_of,
    rerun_from_node, last_seq, cancel_requested, created_at, started_at, finished_at,
    updated_at
"""

_NODE_COLUMNS = """
    id, node_id, status, attempt, input, output, output_ref, output_port, error,
    next_attempt_at, wake_at, deadline_at, resume_token, recoveries, metadata, reused_from,
    created_at, started_at, finished_at
"""


# A run, a pending node run per node, and its first event, in one statement (one round
# trip). {conflict} may make it insert nothing when a run already has the idempotency key.
_INSERT_RUN = """
WITH run AS (
    INSERT INTO runs (id, workspace_id, workflow_id, workflow_version, input, trigger,
                      idempotency_key, parent_run_id, parent_node_run_id, body_of,
                      rerun_of, rerun_from_node, created_by, last_seq)
    VALUES (coalesce(%(id)s, gen_random_uuid()), %(ws)s, %(wf)s, %(version)s, %(input)s,
            %(trigger)s, %(key)s, %(parent)s, %(parent_node)s, %(body_of)s, %(rerun_of)s,
            %(rerun_from)s, %(by)s, 1)
    {conflict}
    RETURNING {columns}
), nodes AS (
    INSERT INTO node_runs (workspace_id, run_id, node_id)
    SELECT run.workspace_id, run.id, unnest(%(nodes)s::text[]) FROM run
), created AS (
    INSERT INTO run_events (workspace_id, run_id, seq, type, data)
    SELECT run.workspace_id, run.id, 1, 'run_created', %(event)s FROM run
)
SELECT * FROM run
"""
_INSERT = _INSERT_RUN.format(conflict="", columns=_RUN_COLUMNS)
_INSERT_UNLESS_KEY_EXISTS = _INSERT_RUN.format(
    conflict="ON CONFLICT (workspace_id, workflow_id, idempotency_key) "
    "WHERE idempotency_key IS NOT NULL DO NOTHING",
    columns=_RUN_COLUMNS,
)


def insert_run(
    conn: Conn,
    *,
    workspace_id: UUID,
    workflow_id: UUID,
    version: int,
    input: Any,
    node_ids: Sequence[str],
    trigger: dict[str, Any],
    idempotency_key: str | None = None,
    parent_run_id: UUID | None = None,
    parent_node_run_id: UUID | None = None,
    body_of: Sequence[str] | None = None,
    rerun_of: UUID | None = None,
    rerun_from_node: str | None = None,
    created_by: UUID | None = None,
) -> dict[str, Any]:
    """Create a run and a pending node run per node, with its first event."""
    row = conn.execute(
        _INSERT,
        {
            "id": None,
            "ws": workspace_id,
            "wf": workflow_id,
            "version": version,
            "input": Jsonb(input),
            "trigger": Jsonb(trigger),
            "key": idempotency_key,
            "parent": parent_run_id,
            "parent_node": parent_node_run_id,
            "body_of": list(body_of) if body_of else None,
            "rerun_of": rerun_of,
            "rerun_from": rerun_from_node,
            "by": created_by,
            "nodes": list(node_ids),
            "event": Jsonb({"version": version, "trigger": trigger}),
        },
    ).fetchone()
    assert row is not None  # a duplicate idempotency key raises instead
    return row


@dataclass(frozen=True)
class TopLevelRun:
    """A run started from outside (not a loop's child, not a rerun): inserted with its
    pending node runs and first event unless a run already has its idempotency key."""

    id: UUID
    workspace_id: UUID
    workflow_id: UUID
    version: int
    input: Any
    node_ids: Sequence[str]
    trigger: dict[str, Any]
    idempotency_key: str | None
    created_by: UUID | None

    def params(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ws": self.workspace_id,
            "wf": self.workflow_id,
            "version": self.version,
            "input": Jsonb(self.input),
            "trigger": Jsonb(self.trigger),
            "key": self.idempotency_key,
            "parent": None,
            "parent_node": None,
            "body_of": None,
            "rerun_of": None,
            "rerun_from": None,
            "by": self.created_by,
            "nodes": list(self.node_ids),
            "event": Jsonb({"version": self.version, "trigger": self.trigger}),
        }


def insert_run_once(conn: Conn, run: TopLevelRun) -> dict[str, Any] | None:
    """The run's row, or None when a run already has its idempotency key: then nothing
    is inserted and nothing raised (no savepoint needed)."""
    return conn.execute(_INSERT_UNLESS_KEY_EXISTS, run.params()).fetchone()


async def add_run_once(conn: AsyncConn, run: TopLevelRun) -> AsyncCursor[DictRow]:
    """``insert_run_once``, queued in a pipelined unit of work: the cursor gives the row
    (or None) once read, which after the unit of work costs no round trip of its own."""
    return await conn.execute(_INSERT_UNLESS_KEY_EXISTS, run.params())


RUN_BY_KEY = f"SELECT {_RUN_COLUMNS} FROM runs WHERE workflow_id = %s AND idempotency_key = %s"


def find_run_by_key(conn: Conn, workflow_id: UUID, key: str) -> dict[str, Any] | None:
    return conn.execute(RUN_BY_KEY, (workflow_id, key)).fetchone()


def get_run(conn: Conn, run_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
    suffix = " FOR UPDATE" if lock else ""
    return conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = %s{suffix}", (run_id,)
    ).fetchone()


READ_RUN = f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = %s"
NODE_RUNS = f"SELECT {_NODE_COLUMNS} FROM node_runs WHERE run_id = %s ORDER BY created_at, node_id"


def node_runs(conn: Conn, run_id: UUID) -> list[dict[str, Any]]:
    return conn.execute(NODE_RUNS, (run_id,)).fetchall()


LIST_RUNS = f"""
SELECT {_RUN_COLUMNS} FROM runs
WHERE parent_run_id IS NULL
  AND (%(wf)s::uuid IS NULL OR workflow_id = %(wf)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(before)s::timestamptz IS NULL OR created_at < %(before)s)
ORDER BY created_at DESC LIMIT %(limit)s
"""


def list_runs_params(
    *, workflow_id: UUID | None, status: str | None, limit: int, before: datetime | None
) -> dict[str, Any]:
    return {"wf": workflow_id, "status": status, "before": before, "limit": limit}


EVENTS_AFTER = (
    "SELECT seq, type, node_id, data, created_at FROM run_events "
    "WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s"
)


# What one advance changed, as statements pipelined into one round trip. MOVE_RUN goes
# first: it applies only while the run's last_seq is still the one the engine planned from
# (locking the row as it checks) and otherwise raises CONFLICT, which aborts the whole
# transaction, so the node and event writes behind it never apply to a run that moved on.
CONFLICT_SQLSTATE = "LMC01"

MOVE_RUN = """
WITH moved AS (
    UPDATE runs SET
        status = %(status)s, last_seq = %(last_seq)s,
        output = CASE WHEN %(set_output)s THEN %(output)s::jsonb ELSE output END,
        output_ref = CASE WHEN %(set_output)s THEN %(output_ref)s ELSE output_ref END,
        error = CASE WHEN %(set_output)s THEN %(error)s::jsonb ELSE error END,
        started_at = coalesce(started_at, CASE WHEN %(status)s <> 'NEW' THEN now() END),
        finished_at = CASE WHEN %(set_output)s THEN now() ELSE finished_at END,
        updated_at = now()
    WHERE id = %(run_id)s AND last_seq = %(expected_seq)s
    RETURNING 1
)
SELECT loom_expect((SELECT count(*) FROM moved) = 1, 'the run moved on')
"""

UPDATE_NODE = """
UPDATE node_runs SET
    status = %(status)s, attempt = %(attempt)s, input = %(input)s, output = %(output)s,
    output_ref = %(output_ref)s, output_port = %(output_port)s, error = %(error)s,
    next_attempt_at = %(next_attempt_at)s, wake_at = %(wake_at)s,
    deadline_at = %(deadline_at)s, resume_token = %(resume_token)s,
    recoveries = %(recoveries)s, metadata = %(metadata)s, started_at = %(started_at)s,
    finished_at = %(finished_at)s
WHERE id = %(id)s
"""

INSERT_EVENTS = """
INSERT INTO run_events (workspace_id, run_id, seq, type, node_id, data)
SELECT %(ws)s, %(run_id)s, e.seq, e.type, e.node_id, coalesce(e.data, '{}')
FROM jsonb_to_recordset(%(events)s::jsonb) AS e(seq bigint, type text, node_id text, data jsonb)
"""

INSERT_BLOBS = """
INSERT INTO blobs (workspace_id, key, size_bytes, sha256, store)
SELECT %(ws)s, b.key, b.size_bytes, b.sha256, b.store
FROM jsonb_to_recordset(%(blobs)s::jsonb) AS b(key text, size_bytes bigint, sha256 text,
                                               store text)
ON CONFLICT (key) DO NOTHING
"""


def move_run_params(
    *,
    run_id: UUID,
    status: str,
    expected_seq: int,
    last_seq: int,
    finished: bool,
    output: Any,
    output_ref: str | None,
    error: Any,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "status": status,
        "expected_seq": expected_seq,
        "last_seq": last_seq,
        "set_output": finished,
        "output": json_param(output) if finished and output_ref is None else None,
        "output_ref": output_ref,
        "error": json_param(error) if error is not None else None,
    }


def node_params(values: dict[str, Any]) -> dict[str, Any]:
    """A node run's changed columns, JSON columns wrapped for the driver."""
    wrapped = dict(values)
    for column in ("input", "output", "error", "metadata"):
        value = wrapped.get(column)
        wrapped[column] = Jsonb(value) if value is not None else None
    wrapped["metadata"] = wrapped["metadata"] or Jsonb({})
    return wrapped


def locate_active_runs(conn: Conn, engine: str) -> list[tuple[UUID, UUID]]:
    rows = conn.execute(
        "SELECT workspace_id, run_id FROM loom_locate_active_runs(%s)", (engine,)
    ).fetchall()
    return [(r["workspace_id"], r["run_id"]) for r in rows]


def locate_stranded_runs(conn: Conn, before: datetime, limit: int) -> list[tuple[UUID, UUID]]:
    """Top-level runs created before ``before`` that are still NEW, oldest first."""
    rows = conn.execute(
        "SELECT workspace_id, run_id FROM loom_locate_stranded_runs(%s, %s)", (before, limit)
    ).fetchall()
    return [(r["workspace_id"], r["run_id"]) for r in rows]


def json_param(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def copy_node_results(
    conn: Conn, *, new_run_id: UUID, old_run_id: UUID, node_ids: Sequence[str]
) -> None:
    """Carry finished results over to a rerun, pointing each at the node run it reuses."""
    conn.execute(
        """
        UPDATE node_runs n SET status = o.status, attempt = o.attempt, output = o.output,
               output_ref = o.output_ref, output_port = o.output_port, error = o.error,
               metadata = o.metadata, started_at = o.started_at, finished_at = o.finished_at,
               reused_from = o.id
        FROM node_runs o
        WHERE n.run_id = %s AND o.run_id = %s AND o.node_id = n.node_id
          AND n.node_id = ANY(%s::text[])
        """,
        (new_run_id, old_run_id, list(node_ids)),
    )


def waiting_node_run(conn: Conn, token_hash: str) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT run_id, node_id, attempt FROM node_runs "
        "WHERE resume_token = %s AND status = 'waiting_input'",
        (token_hash,),
    ).fetchone()
