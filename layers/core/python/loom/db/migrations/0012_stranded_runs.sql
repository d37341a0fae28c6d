-- Runs that were committed but never reached their engine: on AWS the API (or a trigger)
-- commits a run, then starts its Step Functions execution; a start that failed, or a
-- function that died between the two, leaves the run NEW with nothing to drive it. A minute
-- job (loom.runtime.aws.stranded) starts them again, by the same execution name, so a run
-- whose execution exists is not started twice. Children are started by their FLOW.LOOP node.
GRANT SELECT (created_at) ON runs TO loom_locator;

CREATE FUNCTION loom_locate_stranded_runs(p_before timestamptz, p_limit integer)
    RETURNS TABLE (workspace_id uuid, run_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT r.workspace_id, r.id FROM runs r
        WHERE r.status = 'NEW' AND r.parent_run_id IS NULL AND r.created_at < p_before
        ORDER BY r.created_at
        LIMIT p_limit
    $$;
GRANT CREATE ON SCHEMA public TO loom_locator;
ALTER FUNCTION loom_locate_stranded_runs(timestamptz, integer) OWNER TO loom_locator;
REVOKE CREATE ON SCHEMA public FROM loom_locator;
REVOKE ALL ON FUNCTION loom_locate_stranded_runs(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION loom_locate_stranded_runs(timestamptz, integer) TO loom_app;
