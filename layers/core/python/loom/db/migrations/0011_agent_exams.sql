-- Graduation exams started by the periodic worker: it finds, across workspaces, agents whose
-- live version may be ready for its next maturity level (see 0002: loom_locator reads which
-- workspace a piece of work belongs to, loom_app then does the work in a tenant
-- transaction). Readiness itself is computed per candidate, in its workspace.

GRANT SELECT (id, workspace_id, maturity, live_version, deleted_at) ON agents TO loom_locator;
CREATE POLICY locate ON agents FOR SELECT TO loom_locator USING (true);
GRANT SELECT (agent_id, version, spec) ON agent_versions TO loom_locator;
CREATE POLICY locate ON agent_versions FOR SELECT TO loom_locator USING (true);
GRANT SELECT (agent_id, agent_version, from_level, status) ON agent_exams TO loom_locator;
CREATE POLICY locate ON agent_exams FOR SELECT TO loom_locator USING (true);
GRANT SELECT (workspace_id, agent_id, agent_version, kind, outcome) ON episodes TO loom_locator;
CREATE POLICY locate ON episodes FOR SELECT TO loom_locator USING (true);

-- Agents below AUTONOMOUS whose live version has exam cases, has not been examined at the
-- agent's current level yet (an exam that ended in an error does not count), and has at
-- least p_min_episodes finished episodes (a cheap first filter; the thresholds are checked
-- in the workspace's own transaction), in pages of p_limit after the agent id p_after.
CREATE FUNCTION loom_locate_exam_candidates(p_min_episodes integer, p_after uuid,
                                            p_limit integer)
    RETURNS TABLE (workspace_id uuid, agent_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT a.workspace_id, a.id FROM agents a
        JOIN agent_versions v ON v.agent_id = a.id AND v.version = a.live_version
        WHERE a.id > p_after AND a.deleted_at IS NULL AND a.maturity <> 'AUTONOMOUS'
          AND jsonb_typeof(v.spec -> 'exam' -> 'cases') = 'array'
          AND jsonb_array_length(v.spec -> 'exam' -> 'cases') > 0
          AND NOT EXISTS (
              SELECT 1 FROM agent_exams x
              WHERE x.agent_id = a.id AND x.agent_version = a.live_version
                AND x.from_level = a.maturity AND x.status <> 'error')
          AND (SELECT count(*) FROM episodes e
               WHERE e.workspace_id = a.workspace_id AND e.agent_id = a.id
                 AND e.agent_version = a.live_version AND e.kind <> 'exam'
                 AND e.outcome <> 'running') >= p_min_episodes
        ORDER BY a.id
        LIMIT p_limit
    $$;

GRANT CREATE ON SCHEMA public TO loom_locator;
ALTER FUNCTION loom_locate_exam_candidates(integer, uuid, integer) OWNER TO loom_locator;
REVOKE CREATE ON SCHEMA public FROM loom_locator;
REVOKE ALL ON FUNCTION loom_locate_exam_candidates(integer, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION loom_locate_exam_candidates(integer, uuid, integer) TO loom_app;
