-- The engine: crash recovery, child runs (FLOW.LOOP bodies), and finding work across
-- workspaces without giving the application role that power.

ALTER TABLE node_runs ADD COLUMN recoveries integer NOT NULL DEFAULT 0;
ALTER TABLE node_runs ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN parent_node_run_id uuid REFERENCES node_runs (id);
-- Node ids, outermost first, of the FLOW.LOOP nodes whose body this child run executes;
-- the definition is derived from the pinned version, so nothing is stored twice.
ALTER TABLE runs ADD COLUMN body_of text[];
CREATE INDEX runs_parent_node ON runs (parent_node_run_id) WHERE parent_node_run_id IS NOT NULL;

-- loom_locator may only read which workspace a piece of work belongs to. It owns the
-- SECURITY DEFINER functions that return (workspace_id, id) pairs; the work itself is then
-- done in a tenant transaction as loom_app. loom_app is not a member of it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'loom_locator') THEN
        CREATE ROLE loom_locator NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;
GRANT loom_locator TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO loom_locator;

GRANT SELECT (id, workspace_id, status, engine, parent_run_id) ON runs TO loom_locator;
CREATE POLICY locate ON runs FOR SELECT TO loom_locator USING (true);

-- Top-level runs a restarted engine must pick up again (children are resumed by their
-- parent's FLOW.LOOP node).
CREATE FUNCTION loom_locate_active_runs(p_engine text)
    RETURNS TABLE (workspace_id uuid, run_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT r.workspace_id, r.id FROM runs r
        WHERE r.status IN ('NEW', 'RUNNING', 'WAITING_FOR_HUMAN')
          AND r.engine = p_engine AND r.parent_run_id IS NULL
        ORDER BY r.id
    $$;
-- A new owner needs CREATE on the schema at the moment ownership changes; it keeps none.
GRANT CREATE ON SCHEMA public TO loom_locator;
ALTER FUNCTION loom_locate_active_runs(text) OWNER TO loom_locator;
REVOKE CREATE ON SCHEMA public FROM loom_locator;
REVOKE ALL ON FUNCTION loom_locate_active_runs(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION loom_locate_active_runs(text) TO loom_app;

-- Policies compare with (SELECT loom_current_workspace()): an init plan evaluated once per
-- statement, instead of current_setting() once per row scanned.
CREATE OR REPLACE FUNCTION loom_isolate(t regclass) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %s', t);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s '
        'USING (workspace_id = (SELECT loom_current_workspace())) '
        'WITH CHECK (workspace_id = (SELECT loom_current_workspace()))', t);
END
$$;

SELECT loom_isolate(c.oid::regclass)
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'workspace_id' AND NOT a.attisdropped
WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace;

ALTER POLICY tenant_isolation ON workspaces
    USING (id = (SELECT loom_current_workspace()))
    WITH CHECK (id = (SELECT loom_current_workspace()));

-- Lets a pipelined unit of work abort itself: the engine's guarded run update raises
-- SQLSTATE LMC01 when the run moved on, so nothing after it in the transaction applies.
CREATE FUNCTION loom_expect(ok boolean, message text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = 'LMC01', MESSAGE = message;
    END IF;
END
$$;
