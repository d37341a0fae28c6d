"""SQL for triggers, their schedules and accepted deliveries, deployment state, and the
per-workflow concurrency lease."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from loom.db.database import Conn

Row = dict[str, Any]

_TRIGGER_COLUMNS = """
    t.id, t.workflow_id, t.node_id, t.subtype, t.config, t.secret_credential_id,
    t.secret_generated, t.active, t.created_at, t.updated_at
"""

# -- finding triggers ---------------------------------------------------------------------


def locate_trigger(conn: Conn, trigger_id: UUID) -> UUID | None:
    """The workspace of ``trigger_id`` (a system transaction: any workspace)."""
    row = conn.execute("SELECT workspace_id FROM loom_locate_trigger(%s)", (trigger_id,)).fetchone()
    return row["workspace_id"] if row else None


def trigger_with_secret(conn: Conn, trigger_id: UUID) -> Row | None:
    """The trigger, its sealed secret if it has one, and what starting a run needs of its
    workflow (``workflow``: the columns of ``loom.db.workflows.get_workflow`` it uses)."""
    row = conn.execute(
        f"""
        SELECT {_TRIGGER_COLUMNS}, c.type AS secret_type, c.ciphertext, c.nonce,
               c.wrapped_key, c.key_id, w.live_version, w.concurrency_policy,
               w.lease_ttl_seconds
        FROM triggers t
        JOIN workflows w ON w.id = t.workflow_id AND w.deleted_at IS NULL
        LEFT JOIN credentials c ON c.id = t.secret_credential_id
        WHERE t.id = %s
        """,
        (trigger_id,),
    ).fetchone()
    if row is not None:
        row["workflow"] = {
            "id": row["workflow_id"],
            "live_version": row.pop("live_version"),
            "concurrency_policy": row.pop("concurrency_policy"),
            "lease_ttl_seconds": row.pop("lease_ttl_seconds"),
        }
    return row


def triggers_of(conn: Conn, workflow_id: UUID) -> list[Row]:
    return conn.execute(
        f"""
        SELECT {_TRIGGER_COLUMNS}, s.cron, s.timezone, s.missed_policy, s.next_fire_at,
               s.last_fired_at
        FROM triggers t LEFT JOIN schedules s ON s.trigger_id = t.id AND s.active
        WHERE t.workflow_id = %s ORDER BY t.node_id
        """,
        (workflow_id,),
    ).fetchall()


def trigger_by_node(conn: Conn, workflow_id: UUID, node_id: str, *, lock: bool) -> Row | None:
    suffix = " FOR UPDATE" if lock else ""
    return conn.execute(
        f"SELECT {_TRIGGER_COLUMNS} FROM triggers t WHERE t.workflow_id = %s AND t.node_id = %s"
        f"{suffix}",
        (workflow_id, node_id),
    ).fetchone()


# -- binding ------------------------------------------------------------------------------


def upsert_trigger(
    conn: Conn,
    *,
    workspace_id: UUID,
    workflow_id: UUID,
    node_id: str,
    subtype: str,
    config: dict[str, Any],
) -> Row:
    row = conn.execute(
        """
        INSERT INTO triggers (workspace_id, workflow_id, node_id, subtype, config, active)
        VALUES (%s, %s, %s, %s, %s, true)
        ON CONFLICT (workflow_id, node_id) DO UPDATE
            SET subtype = EXCLUDED.subtype, config = EXCLUDED.config, active = true,
                updated_at = now()
        RETURNING id, secret_credential_id, secret_generated
        """,
        (workspace_id, workflow_id, node_id, subtype, Jsonb(config)),
    ).fetchone()
    assert row is not None
    return row


def set_secret(conn: Conn, trigger_id: UUID, credential_id: UUID | None, generated: bool) -> None:
    conn.execute(
        "UPDATE triggers SET secret_credential_id = %s, secret_generated = %s, "
        "updated_at = now() WHERE id = %s",
        (credential_id, generated, trigger_id),
    )


def deactivate_triggers(conn: Conn, workflow_id: UUID, keep: Sequence[str] = ()) -> None:
    """Deactivate the workflow's triggers (and schedules) whose node is not in ``keep``."""
    conn.execute(
        """
        WITH off AS (
            UPDATE triggers SET active = false, updated_at = now()
            WHERE workflow_id = %s AND NOT (node_id = ANY(%s::text[])) AND active
            RETURNING id
        )
        UPDATE schedules SET active = false WHERE trigger_id IN (SELECT id FROM off)
        """,
        (workflow_id, list(keep)),
    )


def upsert_schedule(
    conn: Conn,
    *,
    workspace_id: UUID,
    trigger_id: UUID,
    cron: str,
    timezone: str,
    missed_policy: str,
    next_fire_at: datetime,
) -> None:
    """Bind a schedule. An active one whose cron and zone are unchanged keeps its next fire
    time, so redeploying changes nothing; otherwise it counts from now."""
    conn.execute(
        """
        INSERT INTO schedules AS s (workspace_id, trigger_id, cron, timezone, missed_policy,
                                    next_fire_at, active)
        VALUES (%s, %s, %s, %s, %s, %s, true)
        ON CONFLICT (trigger_id) DO UPDATE SET
            next_fire_at = CASE WHEN s.active AND s.cron = EXCLUDED.cron
                                     AND s.timezone = EXCLUDED.timezone
                                THEN s.next_fire_at ELSE EXCLUDED.next_fire_at END,
            cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,
            missed_policy = EXCLUDED.missed_policy, active = true
        """,
        (workspace_id, trigger_id, cron, timezone, missed_policy, next_fire_at),
    )


def deactivate_schedule(conn: Conn, trigger_id: UUID) -> None:
    conn.execute("UPDATE schedules SET active = false WHERE trigger_id = %s", (trigger_id,))


def schedules_of(conn: Conn, workflow_id: UUID) -> list[Row]:
    """Every schedule the workflow's triggers ever had; ``active`` if it fires now."""
    return conn.execute(
        """
        SELECT s.id, s.workspace_id, s.trigger_id, t.node_id, s.cron, s.timezone,
               s.active AND t.active AS active
        FROM schedules s JOIN triggers t ON t.id = s.trigger_id
        WHERE t.workflow_id = %s ORDER BY t.node_id
        """,
        (workflow_id,),
    ).fetchall()


def set_deployment(
    conn: Conn,
    workflow_id: UUID,
    *,
    state: str,
    version: int | None,
    concurrency_policy: str | None = None,
    lease_ttl_seconds: int | None = None,
) -> None:
    conn.execute(
        """
        UPDATE workflows SET deployment_state = %(state)s, deployed_version = %(version)s,
               deployed_at = CASE
                   WHEN %(state)s <> 'deployed' THEN NULL
                   WHEN deployment_state = 'deployed' AND deployed_version = %(version)s
                       THEN deployed_at
                   ELSE now() END,
               concurrency_policy = coalesce(%(policy)s, concurrency_policy),
               lease_ttl_seconds = coalesce(%(ttl)s, lease_ttl_seconds)
        WHERE id = %(wf)s
        """,
        {
            "state": state,
            "version": version,
            "policy": concurrency_policy,
            "ttl": lease_ttl_seconds,
            "wf": workflow_id,
        },
    )


# -- schedules ----------------------------------------------------------------------------


def locate_due_schedules(conn: Conn, now: datetime, limit: int) -> list[tuple[UUID, UUID]]:
    rows = conn.execute(
        "SELECT workspace_id, schedule_id FROM loom_locate_due_schedules(%s, %s)", (now, limit)
    ).fetchall()
    return [(r["workspace_id"], r["schedule_id"]) for r in rows]


def next_schedule_due(conn: Conn) -> datetime | None:
    row = conn.execute("SELECT loom_next_schedule_due() AS due").fetchone()
    return row["due"] if row else None


def claim_due_schedule(conn: Conn, schedule_id: UUID, now: datetime) -> Row | None:
    """The schedule, locked, if it is still due and active; None when another scheduler
    holds or has already fired it."""
    return conn.execute(
        """
        SELECT s.id, s.trigger_id, s.cron, s.timezone, s.missed_policy, s.next_fire_at,
               t.workflow_id, t.node_id, t.config
        FROM schedules s JOIN triggers t ON t.id = s.trigger_id
        WHERE s.id = %s AND s.active AND t.active AND s.next_fire_at <= %s
        FOR UPDATE OF s SKIP LOCKED
        """,
        (schedule_id, now),
    ).fetchone()


def advance_schedule(
    conn: Conn, schedule_id: UUID, *, next_fire_at: datetime, fired_at: datetime | None
) -> None:
    conn.execute(
        "UPDATE schedules SET next_fire_at = %s, "
        "last_fired_at = coalesce(%s, last_fired_at) WHERE id = %s",
        (next_fire_at, fired_at, schedule_id),
    )


# -- deliveries ---------------------------------------------------------------------------


def record_deliveries(conn: Conn, workspace_id: UUID, trigger_id: UUID, keys: Sequence[str]) -> int:
    """Remember ``keys`` for the trigger; how many were new."""
    rows = conn.execute(
        """
        INSERT INTO trigger_deliveries (workspace_id, trigger_id, key)
        SELECT %s, %s, unnest(%s::text[])
        ON CONFLICT DO NOTHING
        RETURNING key
        """,
        (workspace_id, trigger_id, list(keys)),
    ).fetchall()
    return len(rows)


def locate_stale_deliveries(conn: Conn, before: datetime) -> list[UUID]:
    rows = conn.execute(
        "SELECT workspace_id FROM loom_locate_stale_deliveries(%s)", (before,)
    ).fetchall()
    return [r["workspace_id"] for r in rows]


def prune_deliveries(conn: Conn, before: datetime) -> int:
    return conn.execute("DELETE FROM trigger_deliveries WHERE created_at < %s", (before,)).rowcount


# -- leases -------------------------------------------------------------------------------


def take_lease(
    conn: Conn, *, workspace_id: UUID, workflow_id: UUID, run_id: UUID, ttl_seconds: int
) -> datetime | None:
    """Take the workflow's lease for ``run_id`` (whose row this transaction inserts next):
    None when taken, else when the holder's lease expires. A lease whose time is up is
    taken over; one whose run finished is gone already (``loom_release_lease``).

    Only the conflicting row itself is re-read when a concurrent taker commits first; a
    subquery here would see the statement's older snapshot (and so not the holder's run)."""
    taken = conn.execute(
        """
        INSERT INTO workflow_leases AS l (workspace_id, workflow_id, run_id, expires_at)
        VALUES (%(ws)s, %(wf)s, %(run)s, now() + make_interval(secs => %(ttl)s))
        ON CONFLICT (workflow_id) DO UPDATE
            SET run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at, created_at = now()
            WHERE l.expires_at <= now()
        RETURNING run_id
        """,
        {"ws": workspace_id, "wf": workflow_id, "run": run_id, "ttl": ttl_seconds},
    ).fetchone()
    if taken is not None:
        return None
    # The holder's run may have ended since: then its lease is free from now.
    holder = conn.execute(
        "SELECT coalesce((SELECT expires_at FROM workflow_leases WHERE workflow_id = %s), "
        "now()) AS until",
        (workflow_id,),
    ).fetchone()
    assert holder is not None
    until: datetime = holder["until"]
    return until


def release_lease(conn: Conn, run_id: UUID) -> None:
    conn.execute("DELETE FROM workflow_leases WHERE run_id = %s", (run_id,))
