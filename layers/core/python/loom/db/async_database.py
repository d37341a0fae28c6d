"""The same units of work as ``Database``, for coroutines.

The API's hottest routes (authentication, reading a run, starting one) await the
database on the event loop instead of each taking a worker thread: a thread hop costs
more CPU on the API process than the queries it waits for. The transactions are the
sync ones' (see ``loom.db.database``): every unit of work sets its workspace
transaction-locally, even to nothing.

A unit of work runs in pipeline mode: BEGIN and the workspace go out with its first
statement, and COMMIT with whatever is still queued, so a round trip is paid only where
a result is read. ``read`` reads in one round trip in all; a caller of ``tenant`` that
fetches after the block (the cursor keeps its result) pays nothing for the COMMIT either.

A pool belongs to the event loop that opened it: the API opens it at start-up and closes
it at shutdown (``loom.api.app``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from uuid import UUID

import psycopg
from psycopg.abc import Params, QueryNoTemplate
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from loom.db.database import SET_WORKSPACE, cannot_connect, no_free_connection, pool_arguments
from loom.db.urls import DatabaseUrls
from loom.errors import DatabaseUnavailable

AsyncConn = psycopg.AsyncConnection[DictRow]
Statement = tuple[QueryNoTemplate, Params]
Results = list[list[DictRow]]

_IDLE = TransactionStatus.IDLE


class AsyncDatabase:
    """A pool of application connections (role ``loom_app``) on the running event loop."""

    def __init__(
        self,
        urls: DatabaseUrls,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        password: Callable[[], str] | None = None,
    ) -> None:
        self.urls = urls
        self._timeout = timeout
        self.pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
            **pool_arguments(urls, min_size, max_size, timeout, password),
            name="loom-async",
            connection_class=psycopg.AsyncConnection[DictRow],
        )

    async def open(self) -> AsyncDatabase:
        try:
            await self.pool.open(wait=True, timeout=self._timeout)
        except PoolTimeout:
            await self.pool.close()
            raise cannot_connect(self.urls) from None
        return self

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def tenant(self, workspace_id: UUID | str | None) -> AsyncIterator[AsyncConn]:
        """A transaction that sees exactly one workspace's rows (None: none, for the
        SECURITY DEFINER locators), pipelined."""
        workspace = "" if workspace_id is None else str(UUID(str(workspace_id)))
        async with self._connection() as conn:
            try:
                async with conn.pipeline():
                    await conn.execute("BEGIN")
                    await conn.execute(SET_WORKSPACE, (workspace,))
                    yield conn
                    await conn.execute("COMMIT")
            except BaseException:
                if not conn.closed and not conn.broken and conn.info.transaction_status != _IDLE:
                    await conn.execute("ROLLBACK")
                raise

    async def read(self, workspace_id: UUID | str | None, *statements: Statement) -> Results:
        """The rows of each statement, read in one transaction and one round trip."""
        async with self.tenant(workspace_id) as conn:
            cursors = [await conn.execute(query, params) for query, params in statements]
        return [await cursor.fetchall() for cursor in cursors]

    async def ping(self) -> bool:
        try:
            await self.read(None, ("SELECT 1", ()))
            return True
        except (psycopg.Error, DatabaseUnavailable):
            return False

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConn]:
        try:
            async with self.pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise no_free_connection() from None
