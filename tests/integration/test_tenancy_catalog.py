"""The catalog keeps the tenancy rules: forced RLS everywhere, an app role that owns nothing."""

from __future__ import annotations

import psycopg
import pytest

from loom.db.catalog import tenant_isolation_problems
from tests.utils.pg import PgCluster

EXPECTED_TENANT_TABLES = {
    "workspaces",
    "memberships",
    "invitations",
    "api_keys",
    "credentials",
    "agents",
    "agent_versions",
    "workflows",
    "workflow_versions",
    "runs",
    "node_runs",
    "run_events",
    "hil_requests",
    "triggers",
    "schedules",
    "queue",
    "dead_letters",
    "episodes",
    "llm_usage",
    "blobs",
    "memory_turns",
    "memory_summaries",
    "memory_vectors",
}


def test_every_tenant_table_has_forced_rls_and_a_full_policy(cluster: PgCluster) -> None:
    with psycopg.connect(cluster.urls.owner) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "  (SELECT count(*) FROM pg_policies p WHERE p.tablename = c.relname"
            "     AND p.qual IS NOT NULL AND p.with_check IS NOT NULL) "
            "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE a.attname = 'workspace_id' AND c.relkind = 'r' "
            "  AND c.relnamespace = 'public'::regnamespace"
        ).fetchall()
        problems = tenant_isolation_problems(conn)
    tables = {name for name, *_ in rows}
    assert EXPECTED_TENANT_TABLES - {"workspaces"} <= tables
    for name, enabled, forced, policies in rows:
        assert enabled and forced and policies >= 1, name
    assert problems == []


def test_app_role_owns_nothing_and_cannot_bypass_rls(cluster: PgCluster) -> None:
    with psycopg.connect(cluster.urls.owner) as conn:
        role = conn.execute(
            "SELECT rolbypassrls, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
            "WHERE rolname = 'loom_app'"
        ).fetchone()
        owned = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = 'loom_app'"
        ).fetchone()
    assert role == (False, False, False, False)
    assert owned == (0,)


def test_a_new_tenant_table_without_rls_is_reported(cluster: PgCluster) -> None:
    with psycopg.connect(cluster.urls.owner) as conn:
        conn.execute("CREATE TABLE leaky (id int, workspace_id uuid NOT NULL)")
        problems = tenant_isolation_problems(conn)
        conn.rollback()
    assert "table leaky: row-level security is not enabled" in problems
    assert "table leaky: row-level security is not forced" in problems
    assert "table leaky: no tenant policy with USING and WITH CHECK" in problems


def test_a_widening_policy_is_reported(cluster: PgCluster) -> None:
    with psycopg.connect(cluster.urls.owner) as conn:
        conn.execute("CREATE POLICY peek ON runs FOR SELECT USING (true)")
        problems = tenant_isolation_problems(conn)
        conn.rollback()
    assert problems == ["table runs: policy peek widens what loom_app can see"]


def test_a_policy_without_with_check_is_reported(cluster: PgCluster) -> None:
    with psycopg.connect(cluster.urls.owner) as conn:
        conn.execute("CREATE TABLE half (id int, workspace_id uuid NOT NULL)")
        conn.execute("ALTER TABLE half ENABLE ROW LEVEL SECURITY")
        conn.execute("ALTER TABLE half FORCE ROW LEVEL SECURITY")
        conn.execute(
            "CREATE POLICY p ON half FOR ALL TO loom_locator "
            "USING (workspace_id = loom_current_workspace())"
        )
        problems = tenant_isolation_problems(conn)
        conn.rollback()
    assert problems == ["table half: no tenant policy with USING and WITH CHECK"]


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE runs DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE runs NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON runs",
        "ALTER ROLE loom_app BYPASSRLS",
        "CREATE TABLE mine (workspace_id uuid)",
    ],
)
def test_app_role_cannot_weaken_isolation(cluster: PgCluster, statement: str) -> None:
    with psycopg.connect(cluster.urls.app) as conn, pytest.raises(psycopg.errors.Error):
        conn.execute(statement)
