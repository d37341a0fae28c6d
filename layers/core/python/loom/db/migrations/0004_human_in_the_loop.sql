-- Human-in-the-loop requests filed by the HUMAN_IN_THE_LOOP node: one pending request per
-- waiting node run (a retried attempt reopens it), the one-time respond link found across
-- workspaces by its hash, and overdue requests found by the engine's timeout sweep.

CREATE UNIQUE INDEX hil_requests_open ON hil_requests (node_run_id) WHERE status = 'pending';
CREATE INDEX hil_requests_due ON hil_requests (expires_at) WHERE status = 'pending';

GRANT SELECT (id, workspace_id, run_id, status, link_token_hash, expires_at)
    ON hil_requests TO loom_locator;
CREATE POLICY locate ON hil_requests FOR SELECT TO loom_locator USING (true);

-- The request whose one-time link token hashes to p_token_hash.
CREATE FUNCTION loom_locate_hil_link(p_token_hash text)
    RETURNS TABLE (workspace_id uuid, request_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT h.workspace_id, h.id FROM hil_requests h WHERE h.link_token_hash = p_token_hash
    $$;

-- Pending requests past their deadline, oldest first; each is then timed out in its own
-- workspace's transaction, guarded by status, so a response that wins the race stands.
CREATE FUNCTION loom_locate_overdue_hil(p_now timestamptz, p_limit integer)
    RETURNS TABLE (workspace_id uuid, request_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT h.workspace_id, h.id FROM hil_requests h
        WHERE h.status = 'pending' AND h.expires_at <= p_now
        ORDER BY h.expires_at
        LIMIT p_limit
    $$;

GRANT CREATE ON SCHEMA public TO loom_locator;
ALTER FUNCTION loom_locate_hil_link(text) OWNER TO loom_locator;
ALTER FUNCTION loom_locate_overdue_hil(timestamptz, integer) OWNER TO loom_locator;
REVOKE CREATE ON SCHEMA public FROM loom_locator;

REVOKE ALL ON FUNCTION loom_locate_hil_link(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION loom_locate_overdue_hil(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION loom_locate_hil_link(text) TO loom_app;
GRANT EXECUTE ON FUNCTION loom_locate_overdue_hil(timestamptz, integer) TO loom_app;
