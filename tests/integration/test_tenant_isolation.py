"""Workspace A can neither see nor write workspace B's rows, on any connection."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from loom.db import Database
from tests.utils.pg import PgCluster, insert_workflow


def test_a_sees_none_of_bs_rows(
    database: Database, workspace: uuid.UUID, other_workspace: uuid.UUID
) -> None:
    mine = insert_workflow(database, workspace, "a-flow")
    theirs = insert_workflow(database, other_workspace, "b-flow")
    with database.tenant(workspace) as conn:
        ids = {r["id"] for r in conn.execute("SELECT id FROM workflows").fetchall()}
        spaces = conn.execute("SELECT id FROM workspaces").fetchall()
        by_id = conn.execute("SELECT 1 FROM workflows WHERE id = %s", (theirs,)).fetchone()
    assert ids == {mine}
    assert spaces == [{"id": workspace}]
    assert by_id is None


def test_a_cannot_insert_rows_for_b(
    database: Database, workspace: uuid.UUID, other_workspace: uuid.UUID
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), database.tenant(workspace) as conn:
        conn.execute(
            "INSERT INTO workflows (workspace_id, name) VALUES (%s, 'sneaky')", (other_workspace,)
        )
    with database.tenant(other_workspace) as conn:
        count = conn.execute("SELECT count(*) AS n FROM workflows").fetchone()
    assert count == {"n": 0}


def test_a_cannot_update_or_delete_bs_rows_or_move_its_own(
    database: Database, workspace: uuid.UUID, other_workspace: uuid.UUID
) -> None:
    theirs = insert_workflow(database, other_workspace, "b-flow")
    mine = insert_workflow(database, workspace, "a-flow")
    with database.tenant(workspace) as conn:
        updated = conn.execute("UPDATE workflows SET name = 'x' WHERE id = %s", (theirs,))
        assert updated.rowcount == 0
        deleted = conn.execute("DELETE FROM workflows WHERE id = %s", (theirs,))
        assert deleted.rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege), database.tenant(workspace) as conn:
        conn.execute(
            "UPDATE workflows SET workspace_id = %s WHERE id = %s", (other_workspace, mine)
        )
    with database.tenant(other_workspace) as conn:
        row = conn.execute("SELECT name FROM workflows WHERE id = %s", (theirs,)).fetchone()
    assert row == {"name": "b-flow"}


def test_pooled_connection_forgets_the_workspace(cluster: PgCluster, workspace: uuid.UUID) -> None:
    with Database(cluster.urls, min_size=1, max_size=1) as db:
        insert_workflow(db, workspace, "a-flow")
        with db.tenant(workspace) as conn:
            pid = conn.info.backend_pid
            assert conn.execute("SELECT count(*) AS n FROM workflows").fetchone() == {"n": 1}
        with db.system() as conn:
            assert conn.info.backend_pid == pid, "the pool must hand back the same connection"
            assert conn.execute("SELECT count(*) AS n FROM workflows").fetchone() == {"n": 0}
            assert conn.execute("SELECT count(*) AS n FROM workspaces").fetchone() == {"n": 0}


def test_no_workspace_means_no_rows_and_no_writes(database: Database, workspace: uuid.UUID) -> None:
    insert_workflow(database, workspace, "a-flow")
    with database.system() as conn:
        assert conn.execute("SELECT count(*) AS n FROM workflows").fetchone() == {"n": 0}
    with pytest.raises(psycopg.errors.InsufficientPrivilege), database.system() as conn:
        conn.execute("INSERT INTO workflows (workspace_id, name) VALUES (%s, 'x')", (workspace,))


def test_session_level_workspace_cannot_be_smuggled_past_a_transaction(
    database: Database, workspace: uuid.UUID, other_workspace: uuid.UUID
) -> None:
    insert_workflow(database, other_workspace, "b-flow")
    with database.tenant(workspace) as conn:
        # A hostile statement that sets the workspace for the rest of the session...
        conn.execute("SELECT set_config('app.workspace_id', %s, false)", (str(other_workspace),))
    # ...outlives that transaction in Postgres, but every unit of work sets the workspace
    # transaction-locally first (system() to nothing), so none of them ever sees it.
    for _ in range(3):
        with database.system() as conn:
            assert conn.execute("SELECT count(*) AS n FROM workflows").fetchone() == {"n": 0}


def test_append_only_history(database: Database, workspace: uuid.UUID) -> None:
    flow = insert_workflow(database, workspace, "a-flow")
    with database.tenant(workspace) as conn:
        conn.execute(
            "INSERT INTO workflow_versions (workspace_id, workflow_id, version, definition, "
            "checksum) VALUES (%s, %s, 1, '{}', 'x')",
            (workspace, flow),
        )
    forbidden = psycopg.errors.IntegrityConstraintViolation
    with pytest.raises(forbidden), database.tenant(workspace) as conn:
        conn.execute("UPDATE workflow_versions SET definition = '{\"a\": 1}'")
