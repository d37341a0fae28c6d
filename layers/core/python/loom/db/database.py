"""Connection pool and units of work.

``Database.tenant(workspace_id)`` is the only way application code reaches tenant data: a
transaction whose first statement is ``set_config('app.workspace_id', ..., true)``. The
setting is transaction-local and every unit of work makes it (``system()`` to nothing),
so a pooled connection that served one workspace shows nothing to the next unit of work.
BEGIN and the setting travel together as one simple query, so a unit of work costs one
round trip more than its own statements plus the COMMIT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from loom.config import Settings
from loom.db.urls import DatabaseUrls, describe_target, resolve_urls
from loom.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from loom.db.async_database import AsyncDatabase

log = logging.getLogger(__name__)

Conn = psycopg.Connection[DictRow]

# Every unit of work sets the workspace transaction-locally, even to nothing, so a value
# left in the session by anything else never reaches it. Units of work that pipeline their
# own transaction send SET_WORKSPACE right after BEGIN.
SET_WORKSPACE = "SELECT set_config('app.workspace_id', %s, true)"
_BEGIN_WITHOUT_WORKSPACE = sql.SQL("BEGIN; SELECT set_config('app.workspace_id', '', true)")


class Database:
    """A pool of application connections (role ``loom_app``)."""

    def __init__(
        self,
        urls: DatabaseUrls,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        password: Callable[[], str] | None = None,
    ) -> None:
        """``password``: called for each new connection (a short-lived token, such as an
        IAM auth token on AWS), instead of a password in the URL."""
        self.urls = urls
        self._timeout = timeout
        # What ``beside`` makes its pool from: the same sizes, timeout and password.
        self._options: dict[str, Any] = {
            "min_size": min_size,
            "max_size": max_size,
            "timeout": timeout,
            "password": password,
        }
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            **pool_arguments(urls, **self._options),
            name="loom",
            connection_class=psycopg.Connection[DictRow],
        )

    def beside(self) -> AsyncDatabase:
        """A pool for coroutines to the same database, as the same role, as large as this
        one; unopened (it belongs to the event loop that opens it)."""
        from loom.db.async_database import AsyncDatabase

        return AsyncDatabase(self.urls, **self._options)

    def open(self) -> Database:
        try:
            self.pool.open(wait=True, timeout=self._timeout)
        except PoolTimeout:
            self.pool.close()
            raise cannot_connect(self.urls) from None
        return self

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Database:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tenant(self, workspace_id: UUID | str) -> Iterator[Conn]:
        """A transaction that sees exactly one workspace's rows."""
        workspace = sql.Literal(str(UUID(str(workspace_id))))
        begin = sql.SQL("BEGIN; SELECT set_config('app.workspace_id', {}, true)").format(workspace)
        with self._connection() as conn, _transaction(conn, begin):
            yield conn

    @contextmanager
    def system(self) -> Iterator[Conn]:
        """A transaction with no workspace: tenant tables show nothing.

        For global tables (users) and SECURITY DEFINER functions that hand out
        (id, workspace_id) pairs for work that is then done in ``tenant``.
        """
        with self._connection() as conn, _transaction(conn, _BEGIN_WITHOUT_WORKSPACE):
            yield conn

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        """A raw autocommit connection for units of work that pipeline their own
        transaction (the engine's ``advance``). Until the caller sets the workspace,
        tenant tables show nothing."""
        with self._connection() as conn:
            yield conn

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise no_free_connection() from None

    def ping(self) -> bool:
        try:
            with self._connection() as conn:
                conn.execute("SELECT 1")
            return True
        except (psycopg.Error, DatabaseUnavailable):
            return False


def pool_arguments(
    urls: DatabaseUrls,
    min_size: int,
    max_size: int,
    timeout: float,
    password: Callable[[], str] | None,
) -> dict[str, Any]:
    """What both pools (this one and ``AsyncDatabase``'s) are made with: autocommit
    connections that return dicts, as ``loom_app``, and ``password`` asked for each new
    connection."""
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "row_factory": dict_row,
        "connect_timeout": timeout,
    }
    return {
        "conninfo": urls.app,
        "min_size": min_size,
        "max_size": max_size,
        "timeout": timeout,
        "open": False,
        "kwargs": kwargs if password is None else lambda: {**kwargs, "password": password()},
    }


def cannot_connect(urls: DatabaseUrls) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"Cannot connect to Postgres at {describe_target(urls.app)} as loom_app.",
        solution="Check that migrations ran (`loom db migrate`) and that the loom_app "
        "role can log in (LOOM_APP_DATABASE_URL / LOOM_APP_DB_PASSWORD).",
    )


def no_free_connection() -> DatabaseUnavailable:
    return DatabaseUnavailable(
        "No database connection became free in time.",
        solution="Raise LOOM_POOL_MAX_SIZE or check the database for long transactions.",
    )


@contextmanager
def _transaction(conn: Conn, begin: sql.SQL | sql.Composed) -> Iterator[None]:
    """Explicit BEGIN/COMMIT on an autocommit connection; nested ``conn.transaction()``
    blocks inside become savepoints."""
    conn.execute(begin)
    try:
        yield
    except BaseException:
        if not conn.closed and not conn.broken:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def connect(settings: Settings, *, migrate: bool = True, **kwargs: Any) -> Database:
    """Resolve the database, apply migrations if asked, and open the pool."""
    from loom.db.migrate import apply_migrations

    urls = resolve_urls(settings)
    if migrate:
        password = settings.app_db_password
        apply_migrations(urls.owner, app_password=password.get_secret_value() if password else None)
    kwargs.setdefault("min_size", settings.pool_min_size)
    kwargs.setdefault("max_size", settings.pool_max_size)
    kwargs.setdefault("timeout", settings.connect_timeout_seconds)
    return Database(urls, **kwargs).open()
