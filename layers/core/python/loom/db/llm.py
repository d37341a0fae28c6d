"""SQL of the LLM gateway: what a workspace and a run have spent, the rate-limit token
buckets, and the usage rows every model call leaves."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any
from uuid import UUID

from psycopg import sql

from loom.db.database import SET_WORKSPACE, Conn, Database

_THIS_MONTH = "(date_trunc('month', now() AT TIME ZONE 'UTC'))::date"


@contextmanager
def _unit(db: Database) -> Iterator[Conn]:
    """A connection for a unit of work that pipelines its own transaction (see
    ``Database.connection``), rolled back if anything fails."""
    with db.connection() as conn:
        try:
            yield conn
        except BaseException:
            if not conn.closed and not conn.broken:
                conn.execute("ROLLBACK")
            raise


def _begin(conn: Conn, workspace_id: UUID) -> None:
    conn.execute("BEGIN")
    conn.execute(SET_WORKSPACE, (str(workspace_id),))
    conn.execute("SET LOCAL synchronous_commit = off")


def outbound_allowlist(conn: Conn) -> list[str]:
    """The workspace's allowlisted internal hosts (``workspaces.settings``)."""
    row = conn.execute(
        "SELECT settings -> 'outbound_allowlist' AS hosts FROM workspaces"
    ).fetchone()
    hosts = row["hosts"] if row else None
    return [str(h) for h in hosts] if isinstance(hosts, list) else []


@dataclass(frozen=True)
class Spend:
    """A workspace's budget settings as stored, and what it has spent."""

    budget: dict[str, Any]  # workspaces.settings.llm_budget; empty when none is set
    month_usd: float
    run_usd: float


_READ_SPEND = (
    "SELECT w.settings -> 'llm_budget' AS budget, "
    f"(SELECT s.cost_usd FROM llm_spend s WHERE s.month = {_THIS_MONTH}) AS month_usd, "
    "(SELECT coalesce(sum(u.cost_usd), 0) FROM llm_usage u WHERE u.run_id = %s) AS run_usd "
    "FROM workspaces w"
)


def _spend(row: dict[str, Any] | None) -> Spend:
    if row is None:
        return Spend(budget={}, month_usd=0.0, run_usd=0.0)
    budget = row["budget"]
    return Spend(
        budget=budget if isinstance(budget, dict) else {},
        month_usd=float(row["month_usd"] or 0),
        run_usd=float(row["run_usd"] or 0),
    )


@dataclass(frozen=True)
class Bucket:
    key: str
    capacity: float  # tokens when full: one minute's worth
    per_second: float
    workspace_id: UUID | None  # None: a platform bucket shared by every workspace


def admit(
    db: Database,
    workspace_id: UUID,
    run_id: UUID | None,
    buckets: Sequence[Bucket],
    now: float | None,
    *,
    read_spend: bool = True,
) -> tuple[Spend | None, list[float | None]]:
    """A token from each bucket (None where granted, else the seconds until one is free)
    and, if asked, the workspace's budget setting and what it and the run have spent. One
    pipelined round trip; when a bucket refuses, the tokens the others granted are given
    back (a second one), so no bucket pays for a call that is not made. ``now`` is epoch
    seconds (tests); None: the database's clock."""
    with _unit(db) as conn:
        with conn.pipeline():
            _begin(conn, workspace_id)
            spent = conn.execute(_READ_SPEND, (run_id,)) if read_spend else None
            taken = [
                conn.execute(_statements(b.workspace_id is None)[0], _take_params(b, now))
                for b in buckets
            ]
            conn.execute("COMMIT")
        spend = _spend(spent.fetchone()) if spent is not None else None
        waits = [_wait(cursor.fetchone()) for cursor in taken]
        granted = [bucket for bucket, wait in zip(buckets, waits, strict=True) if wait is None]
        if granted and len(granted) < len(buckets):
            with conn.pipeline():
                _begin(conn, workspace_id)
                for bucket in granted:
                    refund = _statements(bucket.workspace_id is None)[1]
                    conn.execute(refund, _take_params(bucket, now))
                conn.execute("COMMIT")
    return spend, waits


@cache
def _statements(platform: bool) -> tuple[sql.Composed, sql.Composed]:
    """Take one token from a bucket in one statement (the row returned says when the next
    one is free if none was left), and give one back."""
    if platform:
        table, owner, match = "llm_platform_buckets", sql.SQL(""), sql.SQL("")
        conflict = sql.SQL("key")
    else:
        table, owner = "llm_rate_buckets", sql.SQL("%(ws)s, ")
        match = sql.SQL("b.workspace_id = %(ws)s AND ")
        conflict = sql.SQL("workspace_id, key")
    refilled = sql.SQL(
        "least(%(capacity)s, b.tokens + greatest(0, extract(epoch FROM "
        "{time} - b.refilled_at)) * %(rate)s)"
    )
    take = sql.SQL(
        "WITH clock AS (SELECT coalesce(to_timestamp(%(now)s), clock_timestamp()) AS t), "
        "took AS ("
        " INSERT INTO {table} AS b ({columns}key, tokens, refilled_at)"
        " SELECT {owner}%(key)s, %(capacity)s - 1, clock.t FROM clock"
        " ON CONFLICT ({conflict}) DO UPDATE"
        " SET tokens = {upserted} - 1, refilled_at = greatest(b.refilled_at, EXCLUDED.refilled_at)"
        " WHERE {upserted} >= 1"
        " RETURNING 1) "
        "SELECT NULL::float8 AS wait FROM took "
        "UNION ALL "
        "SELECT (1 - {current}) / %(rate)s FROM {table} b, clock "
        "WHERE {match}b.key = %(key)s AND NOT EXISTS (SELECT 1 FROM took)"
    ).format(
        table=sql.Identifier(table),
        columns=sql.SQL("") if platform else sql.SQL("workspace_id, "),
        owner=owner,
        conflict=conflict,
        upserted=refilled.format(time=sql.SQL("EXCLUDED.refilled_at")),
        current=refilled.format(time=sql.SQL("clock.t")),
        match=match,
    )
    refund = sql.SQL(
        "UPDATE {table} AS b SET tokens = least(%(capacity)s, b.tokens + 1) "
        "WHERE {match}b.key = %(key)s"
    ).format(table=sql.Identifier(table), match=match)
    return take, refund


def _take_params(bucket: Bucket, now: float | None) -> dict[str, Any]:
    return {
        "now": now,
        "ws": bucket.workspace_id,
        "key": bucket.key,
        "capacity": bucket.capacity,
        "rate": bucket.per_second,
    }


def _wait(row: dict[str, Any] | None) -> float | None:
    assert row is not None
    wait = row["wait"]
    return None if wait is None else max(0.0, float(wait))


@dataclass(frozen=True)
class UsageRow:
    model: str
    provider: str
    status: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: int


_INSERT_USAGE = (
    "WITH added AS ("
    " INSERT INTO llm_usage (workspace_id, run_id, node_run_id, agent_id, episode_id, model,"
    " provider, status, tokens_in, tokens_out, cost_usd, latency_ms)"
    " SELECT %(ws)s, %(run)s, %(node)s, %(agent)s, %(episode)s, a.* FROM unnest("
    " %(model)s::text[], %(provider)s::text[], %(status)s::text[], %(tin)s::int[],"
    " %(tout)s::int[], %(cost)s::numeric[], %(latency)s::int[]) AS a"
    " RETURNING cost_usd) "
    "INSERT INTO llm_spend AS s (workspace_id, month, cost_usd) "
    f"SELECT %(ws)s, {_THIS_MONTH}, coalesce(sum(cost_usd), 0) FROM added "
    "ON CONFLICT (workspace_id, month) DO UPDATE SET cost_usd = s.cost_usd + EXCLUDED.cost_usd "
    "RETURNING cost_usd"
)


def insert_usage(
    db: Database,
    *,
    workspace_id: UUID,
    run_id: UUID | None,
    node_run_id: UUID | None,
    agent_id: UUID | None,
    episode_id: UUID | None,
    rows: Sequence[UsageRow],
) -> float:
    """Insert the rows and add their cost to this month's spend, in one pipelined round
    trip; the month's total after."""
    params = {
        "ws": workspace_id,
        "run": run_id,
        "node": node_run_id,
        "agent": agent_id,
        "episode": episode_id,
        "model": [r.model for r in rows],
        "provider": [r.provider for r in rows],
        "status": [r.status for r in rows],
        "tin": [r.tokens_in for r in rows],
        "tout": [r.tokens_out for r in rows],
        "cost": [r.cost_usd for r in rows],
        "latency": [r.latency_ms for r in rows],
    }
    with _unit(db) as conn:
        with conn.pipeline():
            _begin(conn, workspace_id)
            total = conn.execute(_INSERT_USAGE, params)
            conn.execute("COMMIT")
        found = total.fetchone()
    assert found is not None
    return float(found["cost_usd"])
