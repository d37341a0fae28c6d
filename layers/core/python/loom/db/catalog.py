"""Catalog checks that keep tenant isolation true as the schema grows.

``tenant_isolation_problems`` runs inside every migration's transaction: a migration that
adds a tenant-owned table (one with ``workspace_id``) without forced row-level security
and a complete policy, or that gives the application role ownership or BYPASSRLS, is
rolled back with the reason.
"""

from __future__ import annotations

from typing import Any

import psycopg

from loom.db.urls import APP_ROLE

_TENANT_TABLES = """
SELECT c.relname AS name, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
       EXISTS (SELECT 1 FROM pg_policies p
               WHERE p.schemaname = 'public' AND p.tablename = c.relname
                 AND p.cmd = 'ALL' AND p.qual IS NOT NULL AND p.with_check IS NOT NULL
                 AND p.qual LIKE '%%loom_current_workspace()%%'
                 AND p.with_check LIKE '%%loom_current_workspace()%%') AS has_policy
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
  AND (c.relname = 'workspaces' OR EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = 'workspace_id' AND NOT a.attisdropped))
ORDER BY c.relname
"""

# Any permissive policy but tenant_isolation that applies to the app role widens what it sees.
_WIDENING_POLICIES = """
SELECT p.tablename, p.policyname FROM pg_policies p
WHERE p.schemaname = 'public' AND p.policyname <> 'tenant_isolation'
  AND p.permissive = 'PERMISSIVE'
  AND (p.roles && ARRAY['public', %s]::name[])
ORDER BY 1, 2
"""

_APP_ROLE = """
SELECT r.rolbypassrls AS bypass, r.rolsuper AS super,
       (SELECT array_agg(c.relname ORDER BY c.relname) FROM pg_class c
        WHERE c.relowner = r.oid) AS owned
FROM pg_roles r WHERE r.rolname = %s
"""


def tenant_isolation_problems(conn: psycopg.Connection[Any]) -> list[str]:
    """Every way the catalog breaks the tenancy rules; empty when all is well."""
    problems: list[str] = []
    for name, enabled, forced, has_policy in conn.execute(_TENANT_TABLES).fetchall():
        if not enabled:
            problems.append(f"table {name}: row-level security is not enabled")
        if not forced:
            problems.append(f"table {name}: row-level security is not forced")
        if not has_policy:
            problems.append(f"table {name}: no tenant policy with USING and WITH CHECK")
    for table, policy in conn.execute(_WIDENING_POLICIES, (APP_ROLE,)).fetchall():
        problems.append(f"table {table}: policy {policy} widens what {APP_ROLE} can see")
    role = conn.execute(_APP_ROLE, (APP_ROLE,)).fetchone()
    if role is None:
        problems.append(f"role {APP_ROLE} does not exist")
    else:
        bypass, superuser, owned = role
        if bypass or superuser:
            problems.append(f"role {APP_ROLE} can bypass row-level security")
        if owned:
            problems.append(f"role {APP_ROLE} owns {', '.join(owned)}")
    return problems
