-- Triggers and intake: deployments, generated secrets, webhook replay protection, the
-- per-workflow concurrency lease, the queue's waiting room, and the cross-workspace
-- look-ups that the public webhook route, the scheduler and the queue consumer need.

-- Deployment ---------------------------------------------------------------------------

-- How long a run may hold its workflow's lease (policies skip and queue) before the lease
-- is presumed abandoned and the next start takes it over.
ALTER TABLE workflows ADD COLUMN lease_ttl_seconds integer NOT NULL DEFAULT 3600
    CHECK (lease_ttl_seconds BETWEEN 10 AND 604800);
ALTER TABLE workflows ADD COLUMN deployed_at timestamptz;

-- A secret Loom generated for a trigger is shown once, in the reply that issues it; a
-- secret the builder supplied (a credential they created) is never shown.
ALTER TABLE triggers ADD COLUMN secret_generated boolean NOT NULL DEFAULT false;

-- Deliveries a trigger has accepted, by delivery id and by signature, so a replay (the
-- same delivery id, or the same signed request) starts nothing. Pruned after a retention.
CREATE TABLE trigger_deliveries (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    trigger_id   uuid NOT NULL REFERENCES triggers (id),
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 300),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trigger_id, key)
);
CREATE INDEX trigger_deliveries_age ON trigger_deliveries (workspace_id, created_at);
SELECT loom_isolate('trigger_deliveries');

-- Concurrency ----------------------------------------------------------------------------

-- At most one row per workflow: the run holding it (policies skip and queue). Taken in
-- the transaction that creates the run (so the run id is known before the run row exists:
-- the foreign key is checked at commit), released when the run finishes, by the trigger
-- below, whichever engine finished it.
CREATE TABLE workflow_leases (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    workflow_id  uuid PRIMARY KEY REFERENCES workflows (id),
    run_id       uuid NOT NULL REFERENCES runs (id) DEFERRABLE INITIALLY DEFERRED,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_leases_run ON workflow_leases (run_id);
SELECT loom_isolate('workflow_leases');

-- Events of a queue-policy workflow wait here for its lease; released, they are due at once.
ALTER TABLE queue ADD COLUMN waiting_for uuid;
CREATE INDEX queue_waiting ON queue (waiting_for) WHERE waiting_for IS NOT NULL;
CREATE INDEX dead_letters_recent ON dead_letters (workspace_id, created_at DESC);

-- Runs as loom_app inside the transaction that finishes the run, so RLS applies as usual.
CREATE FUNCTION loom_release_lease() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    WITH released AS (
        DELETE FROM workflow_leases WHERE run_id = NEW.id RETURNING workflow_id
    )
    UPDATE queue SET available_at = now(), waiting_for = NULL
    WHERE waiting_for IN (SELECT workflow_id FROM released);
    RETURN NULL;
END
$$;
-- The WHEN clause keeps the engine's hot path free: the function runs once per run, at its end.
CREATE TRIGGER runs_release_lease AFTER UPDATE OF status ON runs
    FOR EACH ROW
    WHEN (NEW.status IN ('SUCCESS', 'ERROR', 'CANCELLED') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION loom_release_lease();

-- Finding work across workspaces (see 0002: loom_locator reads, loom_app does the work) ----

GRANT SELECT (id, workspace_id) ON triggers TO loom_locator;
CREATE POLICY locate ON triggers FOR SELECT TO loom_locator USING (true);
GRANT SELECT (id, workspace_id, active, next_fire_at) ON schedules TO loom_locator;
CREATE POLICY locate ON schedules FOR SELECT TO loom_locator USING (true);
GRANT SELECT (id, workspace_id, topic, available_at, locked_until) ON queue TO loom_locator;
CREATE POLICY locate ON queue FOR SELECT TO loom_locator USING (true);
GRANT SELECT (workspace_id, created_at) ON trigger_deliveries TO loom_locator;
CREATE POLICY locate ON trigger_deliveries FOR SELECT TO loom_locator USING (true);

-- The workspace of the trigger a public webhook names.
CREATE FUNCTION loom_locate_trigger(p_trigger uuid)
    RETURNS TABLE (workspace_id uuid, trigger_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT t.workspace_id, t.id FROM triggers t WHERE t.id = p_trigger
    $$;

-- Schedules due at p_now, most overdue first; each is claimed in its workspace's
-- transaction with FOR UPDATE SKIP LOCKED and a guarded next_fire_at.
CREATE FUNCTION loom_locate_due_schedules(p_now timestamptz, p_limit integer)
    RETURNS TABLE (workspace_id uuid, schedule_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT s.workspace_id, s.id FROM schedules s
        WHERE s.active AND s.next_fire_at <= p_now
        ORDER BY s.next_fire_at
        LIMIT p_limit
    $$;

-- When the next schedule is due, so the scheduler can sleep until then.
CREATE FUNCTION loom_next_schedule_due()
    RETURNS timestamptz
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT min(s.next_fire_at) FROM schedules s WHERE s.active
    $$;

-- Messages of these topics that are due and not held by a consumer, oldest first; each is
-- then claimed by a guarded update in its workspace's transaction.
CREATE FUNCTION loom_locate_ready_messages(p_topics text[], p_limit integer)
    RETURNS TABLE (workspace_id uuid, message_id bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT q.workspace_id, q.id FROM queue q
        WHERE q.topic = ANY (p_topics) AND q.available_at <= now()
          AND (q.locked_until IS NULL OR q.locked_until <= now())
        ORDER BY q.id
        LIMIT p_limit
    $$;

-- Workspaces holding deliveries older than p_before, to prune in their own transactions.
CREATE FUNCTION loom_locate_stale_deliveries(p_before timestamptz)
    RETURNS TABLE (workspace_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT DISTINCT d.workspace_id FROM trigger_deliveries d WHERE d.created_at < p_before
    $$;

GRANT CREATE ON SCHEMA public TO loom_locator;
ALTER FUNCTION loom_locate_trigger(uuid) OWNER TO loom_locator;
ALTER FUNCTION loom_locate_due_schedules(timestamptz, integer) OWNER TO loom_locator;
ALTER FUNCTION loom_next_schedule_due() OWNER TO loom_locator;
ALTER FUNCTION loom_locate_ready_messages(text[], integer) OWNER TO loom_locator;
ALTER FUNCTION loom_locate_stale_deliveries(timestamptz) OWNER TO loom_locator;
REVOKE CREATE ON SCHEMA public FROM loom_locator;

REVOKE ALL ON FUNCTION loom_locate_trigger(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION loom_locate_due_schedules(timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION loom_next_schedule_due() FROM PUBLIC;
REVOKE ALL ON FUNCTION loom_locate_ready_messages(text[], integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION loom_locate_stale_deliveries(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION loom_locate_trigger(uuid) TO loom_app;
GRANT EXECUTE ON FUNCTION loom_locate_due_schedules(timestamptz, integer) TO loom_app;
GRANT EXECUTE ON FUNCTION loom_next_schedule_due() TO loom_app;
GRANT EXECUTE ON FUNCTION loom_locate_ready_messages(text[], integer) TO loom_app;
GRANT EXECUTE ON FUNCTION loom_locate_stale_deliveries(timestamptz) TO loom_app;
