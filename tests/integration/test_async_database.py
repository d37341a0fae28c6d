"""The pool for coroutines keeps the sync pool's promises: one workspace per unit of work,
nothing left behind by a failed one, and a pipelined read that sees one snapshot."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import pytest

from loom.db import Database
from loom.db.async_database import AsyncDatabase
from loom.errors import NotFound
from tests.utils.pg import PgCluster, insert_workflow

T = TypeVar("T")

COUNT = "SELECT count(*) AS n FROM workflows"


def _with_pool(cluster: PgCluster, use: Callable[[AsyncDatabase], Awaitable[T]]) -> T:
    """``use`` with a one-connection pool, so every unit of work shares a backend."""

    async def go() -> T:
        adb = await AsyncDatabase(cluster.urls, min_size=1, max_size=1).open()
        try:
            return await use(adb)
        finally:
            await adb.close()

    return asyncio.run(go())


def test_a_read_sees_one_workspace_and_no_workspace_sees_nothing(
    cluster: PgCluster, database: Database, workspace: uuid.UUID, other_workspace: uuid.UUID
) -> None:
    mine = insert_workflow(database, workspace, "a-flow")
    theirs = insert_workflow(database, other_workspace, "b-flow")

    async def use(adb: AsyncDatabase) -> tuple[object, ...]:
        ids, by_id = await adb.read(
            workspace,
            ("SELECT id FROM workflows", ()),
            ("SELECT id FROM workflows WHERE id = %s", (theirs,)),
        )
        (nothing,) = await adb.read(None, (COUNT, ()))
        return ids, by_id, nothing

    ids, by_id, nothing = _with_pool(cluster, use)
    assert ids == [{"id": mine}]
    assert by_id == []
    assert nothing == [{"n": 0}]


def test_writes_commit_and_are_refused_for_another_workspace(
    cluster: PgCluster, database: Database, workspace: uuid.UUID, other_workspace: uuid.UUID
) -> None:
    async def use(adb: AsyncDatabase) -> None:
        async with adb.tenant(workspace) as conn:
            await conn.execute(
                "INSERT INTO workflows (workspace_id, name) VALUES (%s, 'kept')", (workspace,)
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with adb.tenant(workspace) as conn:
                await conn.execute(
                    "INSERT INTO workflows (workspace_id, name) VALUES (%s, 'x')",
                    (other_workspace,),
                )

    _with_pool(cluster, use)
    with database.tenant(workspace) as conn:
        assert [r["name"] for r in conn.execute("SELECT name FROM workflows").fetchall()] == [
            "kept"
        ]
    with database.tenant(other_workspace) as conn:
        assert conn.execute(COUNT).fetchone() == {"n": 0}


def test_a_failed_unit_of_work_leaves_nothing_and_the_connection_serves_the_next(
    cluster: PgCluster, database: Database, workspace: uuid.UUID
) -> None:
    async def use(adb: AsyncDatabase) -> tuple[int, int, list[object]]:
        # A statement Postgres refuses, after a write in the same unit...
        with pytest.raises(psycopg.errors.DivisionByZero):
            async with adb.tenant(workspace) as conn:
                await conn.execute(
                    "INSERT INTO workflows (workspace_id, name) VALUES (%s, 'lost')", (workspace,)
                )
                await (await conn.execute("SELECT 1 / 0")).fetchone()
        # ...and an error raised by the caller between statements.
        with pytest.raises(NotFound):
            async with adb.tenant(workspace) as conn:
                await conn.execute(
                    "INSERT INTO workflows (workspace_id, name) VALUES (%s, 'lost')", (workspace,)
                )
                first = conn.info.backend_pid
                raise NotFound("gone", solution="none")
        async with adb.tenant(workspace) as conn:
            second = conn.info.backend_pid
            rows = await (await conn.execute(COUNT)).fetchall()
        return first, second, list(rows)

    first, second, rows = _with_pool(cluster, use)
    assert first == second, "the pool must hand back the same, healthy connection"
    assert rows == [{"n": 0}]
    with database.tenant(workspace) as conn:
        assert conn.execute(COUNT).fetchone() == {"n": 0}


def test_a_session_level_workspace_never_reaches_the_next_unit_of_work(
    cluster: PgCluster, database: Database, workspace: uuid.UUID, other_workspace: uuid.UUID
) -> None:
    insert_workflow(database, other_workspace, "b-flow")

    async def use(adb: AsyncDatabase) -> list[object]:
        async with adb.tenant(workspace) as conn:
            await conn.execute(
                "SELECT set_config('app.workspace_id', %s, false)", (str(other_workspace),)
            )
        seen: list[object] = []
        for _ in range(3):
            (rows,) = await adb.read(None, (COUNT, ()))
            seen += rows
        return seen

    assert _with_pool(cluster, use) == [{"n": 0}] * 3
