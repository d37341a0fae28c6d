"""The embedded Postgres (``pgserver``: PostgreSQL 16 with pgvector) for local mode.

The data directory is reused across runs. Several processes may start at once: pgserver
serialises start-up with an inter-process lock and counts the processes using the server,
which stops when the last one exits. Bootstrap (roles, database, extensions) runs under an
advisory lock so concurrent first starts agree.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from loom.db.urls import DATABASE_NAME, OWNER_ROLE
from loom.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

_BOOTSTRAP_LOCK = 7_291_001


def _damaged(pgdata: Path, reason: str) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"The embedded Postgres in {pgdata} did not start: {reason} (log: {pgdata / 'log'}).",
        solution="If the data directory is damaged, run `loom db reset` to recreate it "
        "(this deletes local data), or point DATABASE_URL at another Postgres.",
    )


def start_embedded(pgdata: Path) -> Path:
    """Start or join the server for ``pgdata``; return the directory of its Unix socket."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver then
        # uses /tmp/runtime-<uid>, which is what we want.
        warnings.simplefilter("ignore")
        import pgserver  # local extra; absent in Lambda, where DATABASE_URL is always set

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _check_not_damaged(pgdata)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        superuser = server.get_uri()
    except (subprocess.SubprocessError, AssertionError, OSError) as exc:
        raise _damaged(pgdata, _last_server_error(pgdata) or type(exc).__name__) from None
    _bootstrap(superuser)
    host = psycopg.conninfo.conninfo_to_dict(superuser).get("host")
    return Path(str(host))


def _last_server_error(pgdata: Path) -> str | None:
    """The last FATAL or PANIC line of the server log, which says why it would not start."""
    try:
        lines = (pgdata / "log").read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        for level in ("PANIC:", "FATAL:"):
            if level in line:
                return line.split(level, 1)[1].strip()
    return None


def _check_not_damaged(pgdata: Path) -> None:
    if not pgdata.exists() or not any(pgdata.iterdir()):
        return
    version = pgdata / "PG_VERSION"
    if not version.is_file() or version.read_text().strip() != "16":
        raise _damaged(pgdata, "PG_VERSION is missing or not 16")
    if not (pgdata / "global" / "pg_control").is_file():
        raise _damaged(pgdata, "global/pg_control is missing")


def _bootstrap(superuser_uri: str) -> None:
    """Create the owner role, the ``loom`` database and pgvector, once, race-free."""
    with psycopg.connect(superuser_uri, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_BOOTSTRAP_LOCK,))
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (OWNER_ROLE,)).fetchone():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS").format(
                    sql.Identifier(OWNER_ROLE)
                )
            )
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,))
        if not exists.fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE_NAME), sql.Identifier(OWNER_ROLE)
                )
            )
        conn.execute("SELECT pg_advisory_unlock(%s)", (_BOOTSTRAP_LOCK,))
    loom_uri = psycopg.conninfo.make_conninfo(superuser_uri, dbname=DATABASE_NAME)
    with psycopg.connect(loom_uri, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_BOOTSTRAP_LOCK,))
        # pgvector is not a trusted extension: the superuser creates it for the owner.
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("SELECT pg_advisory_unlock(%s)", (_BOOTSTRAP_LOCK,))


def reset_embedded(pgdata: Path) -> None:
    """Stop the server if it runs and delete its data directory."""
    if not pgdata.exists():
        return
    from pgserver import pg_ctl  # type: ignore[attr-defined]

    if (pgdata / "postmaster.pid").exists():
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_pg_user())
        except subprocess.SubprocessError:
            log.warning("embedded Postgres did not stop cleanly; deleting its data anyway")
    shutil.rmtree(pgdata)


def _pg_user() -> str | None:
    import os

    return "pgserver" if os.geteuid() == 0 else None
