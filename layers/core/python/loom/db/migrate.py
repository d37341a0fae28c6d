"""Ordered SQL migrations, each applied once inside its own transaction.

Files are ``migrations/NNNN_name.sql``. Applied versions are recorded with a checksum in
``schema_migrations``; a session advisory lock serialises processes that start together,
so the second one finds the work done. An applied file that later changes is refused:
migrations are append-only.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from loom.db.catalog import tenant_isolation_problems
from loom.db.urls import APP_ROLE, describe_target, failure_reason
from loom.errors import DatabaseUnavailable, LoomError

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 7_291_002


class MigrationError(LoomError):
    code = "migration_error"


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    folder = resources.files("loom.db") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(version, rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def open_owner_connection(owner_url: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(owner_url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = failure_reason(exc)
        raise DatabaseUnavailable(
            f"Cannot reach Postgres at {describe_target(owner_url)}: {reason}.",
            solution="Check DATABASE_URL (host, port, user, password) and that the server "
            "is running and accepts connections from this machine.",
        ) from None


def apply_migrations(owner_url: str, *, app_password: str | None = None) -> list[str]:
    """Apply pending migrations; return the versions applied by this call."""
    applied_now: list[str] = []
    with open_owner_connection(owner_url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
            done = {str(version): str(checksum) for version, checksum in rows}
            for migration in load_migrations():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"Migration {migration.version}_{migration.name} changed after it "
                            "was applied.",
                            solution="Never edit an applied migration; add a new one instead.",
                        )
                    continue
                started = time.perf_counter()
                with conn.transaction(), _reported(migration):
                    conn.execute(migration.sql.encode())
                    problems = tenant_isolation_problems(conn)
                    if problems:
                        raise MigrationError(
                            f"Migration {migration.version}_{migration.name} breaks tenant "
                            f"isolation: {'; '.join(problems)}.",
                            solution="Call loom_isolate('<table>') for every table with "
                            "workspace_id, and grant loom_app data rights only.",
                        )
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                log.info(
                    "applied migration %s_%s in %.0f ms",
                    migration.version,
                    migration.name,
                    (time.perf_counter() - started) * 1000,
                )
                applied_now.append(migration.version)
            if app_password:
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(APP_ROLE), sql.Literal(app_password)
                    )
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied_now


@contextmanager
def _reported(migration: Migration) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MigrationError(
            f"Migration {migration.version}_{migration.name} failed: {first}",
            solution="The database was left as it was before this migration. The role in "
            "DATABASE_URL must own the schema and be allowed to create roles.",
        ) from None


def grant_iam_login(owner_url: str) -> bool:
    """Where the server has RDS's ``rds_iam`` role (RDS, Aurora), let ``loom_app`` log in
    with IAM auth tokens; whether it did. Elsewhere (the embedded Postgres) nothing."""
    with open_owner_connection(owner_url) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'").fetchone() is None:
            return False
        conn.execute(sql.SQL("GRANT rds_iam TO {}").format(sql.Identifier(APP_ROLE)))
        return True
