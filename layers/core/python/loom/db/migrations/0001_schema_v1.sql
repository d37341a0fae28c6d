-- Schema v1 for the whole product. Later migrations add columns and tables; they do not
-- redesign these. Rules:
--   * every tenant-owned table has workspace_id NOT NULL, row-level security ENABLED and
--     FORCED, and the policy tenant_isolation (USING and WITH CHECK);
--   * the application role loom_app owns nothing and cannot bypass RLS;
--   * histories (versions, run events) are append-only, enforced by triggers.

CREATE EXTENSION IF NOT EXISTS vector;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'loom_app') THEN
        CREATE ROLE loom_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
END
$$;

-- The workspace of the current transaction, or NULL: no setting, no rows.
CREATE FUNCTION loom_current_workspace() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('app.workspace_id', true), '')::uuid $$;

CREATE FUNCTION loom_forbid_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
END
$$;

-- Identity ---------------------------------------------------------------------------

CREATE TABLE workspaces (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    settings    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Users are global (one person, many workspaces); they hold no tenant data.
CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email           text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    password_hash   text,
    display_name    text,
    disabled        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id),
    family_id   uuid NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE memberships (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    user_id      uuid NOT NULL REFERENCES users (id),
    role         text NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE invitations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    email        text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    token_hash   text NOT NULL UNIQUE,
    invited_by   uuid REFERENCES users (id),
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    name         text NOT NULL,
    prefix       text NOT NULL UNIQUE,
    key_hash     text NOT NULL,
    scopes       text[] NOT NULL DEFAULT '{}',
    created_by   uuid REFERENCES users (id),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credentials (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    name         text NOT NULL,
    type         text NOT NULL,
    ciphertext   bytea NOT NULL,
    nonce        bytea NOT NULL,
    wrapped_key  bytea NOT NULL,
    key_id       text NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}',
    created_by   uuid REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

-- Agents -----------------------------------------------------------------------------

CREATE TABLE agents (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    maturity     text NOT NULL DEFAULT 'STUDENT'
                 CHECK (maturity IN ('STUDENT', 'INTERN', 'SUPERVISED', 'AUTONOMOUS')),
    live_version integer,
    latest_version integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE UNIQUE INDEX agents_name_key ON agents (workspace_id, name) WHERE deleted_at IS NULL;

CREATE TABLE agent_versions (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    agent_id     uuid NOT NULL REFERENCES agents (id),
    version      integer NOT NULL CHECK (version >= 1),
    spec         jsonb NOT NULL,
    checksum     text NOT NULL,
    created_by   uuid REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, version)
);
CREATE TRIGGER agent_versions_immutable BEFORE UPDATE OR DELETE ON agent_versions
    FOR EACH ROW EXECUTE FUNCTION loom_forbid_change();

-- Workflows --------------------------------------------------------------------------

CREATE TABLE workflows (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id   uuid NOT NULL REFERENCES workspaces (id),
    name           text NOT NULL,
    description    text NOT NULL DEFAULT '',
    live_version   integer,
    latest_version integer NOT NULL DEFAULT 0,
    deployed_version integer,
    deployment_state text NOT NULL DEFAULT 'undeployed'
                   CHECK (deployment_state IN ('undeployed', 'deployed', 'failed')),
    concurrency_policy text NOT NULL DEFAULT 'allow'
                   CHECK (concurrency_policy IN ('allow', 'skip', 'queue')),
    created_by     uuid REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE INDEX workflows_workspace ON workflows (workspace_id, created_at DESC);

CREATE TABLE workflow_versions (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    workflow_id  uuid NOT NULL REFERENCES workflows (id),
    version      integer NOT NULL CHECK (version >= 1),
    definition   jsonb NOT NULL,
    checksum     text NOT NULL,
    created_by   uuid REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, version)
);
CREATE TRIGGER workflow_versions_immutable BEFORE UPDATE OR DELETE ON workflow_versions
    FOR EACH ROW EXECUTE FUNCTION loom_forbid_change();

-- Runs -------------------------------------------------------------------------------

CREATE TABLE runs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id     uuid NOT NULL REFERENCES workspaces (id),
    workflow_id      uuid NOT NULL REFERENCES workflows (id),
    workflow_version integer NOT NULL,
    status           text NOT NULL DEFAULT 'NEW'
                     CHECK (status IN ('NEW', 'RUNNING', 'WAITING_FOR_HUMAN', 'PAUSED',
                                       'SUCCESS', 'ERROR', 'CANCELLED')),
    input            jsonb,
    input_ref        text,
    output           jsonb,
    output_ref       text,
    error            jsonb,
    trigger          jsonb NOT NULL DEFAULT '{"type": "manual"}',
    engine           text NOT NULL DEFAULT 'local' CHECK (engine IN ('local', 'aws')),
    execution_ref    text,
    idempotency_key  text,
    parent_run_id    uuid REFERENCES runs (id),
    rerun_of         uuid REFERENCES runs (id),
    rerun_from_node  text,
    last_seq         bigint NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_by       uuid REFERENCES users (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_workflow ON runs (workspace_id, workflow_id, created_at DESC);
CREATE INDEX runs_active ON runs (status) WHERE status IN ('NEW', 'RUNNING', 'WAITING_FOR_HUMAN');
CREATE UNIQUE INDEX runs_idempotency ON runs (workspace_id, workflow_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE node_runs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id    uuid NOT NULL REFERENCES workspaces (id),
    run_id          uuid NOT NULL REFERENCES runs (id),
    node_id         text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'waiting_input', 'completed',
                                      'failed', 'skipped', 'cancelled')),
    attempt         integer NOT NULL DEFAULT 0,
    input           jsonb,
    output          jsonb,
    output_ref      text,
    output_port     text,
    error           jsonb,
    next_attempt_at timestamptz,
    wake_at         timestamptz,
    deadline_at     timestamptz,
    resume_token    text UNIQUE,
    reused_from     uuid REFERENCES node_runs (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    UNIQUE (run_id, node_id)
);
CREATE INDEX node_runs_wake ON node_runs (wake_at) WHERE wake_at IS NOT NULL;

CREATE TABLE run_events (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    run_id       uuid NOT NULL REFERENCES runs (id),
    seq          bigint NOT NULL CHECK (seq >= 1),
    type         text NOT NULL,
    node_id      text,
    data         jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);
CREATE TRIGGER run_events_append_only BEFORE UPDATE OR DELETE ON run_events
    FOR EACH ROW EXECUTE FUNCTION loom_forbid_change();

CREATE TABLE hil_requests (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    run_id        uuid NOT NULL REFERENCES runs (id),
    node_run_id   uuid NOT NULL REFERENCES node_runs (id),
    kind          text NOT NULL CHECK (kind IN ('approval', 'input')),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'approved', 'rejected', 'responded',
                                    'timed_out', 'cancelled')),
    request       jsonb NOT NULL DEFAULT '{}',
    response      jsonb,
    responded_by  uuid REFERENCES users (id),
    channels      text[] NOT NULL DEFAULT '{in_app}',
    link_token_hash text UNIQUE,
    task_token    text,
    timeout_action text NOT NULL DEFAULT 'fail'
                  CHECK (timeout_action IN ('fail', 'continue', 'route')),
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    responded_at  timestamptz
);
CREATE INDEX hil_requests_pending ON hil_requests (workspace_id, created_at) WHERE status = 'pending';

-- Triggers and intake ----------------------------------------------------------------

CREATE TABLE triggers (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    workflow_id  uuid NOT NULL REFERENCES workflows (id),
    node_id      text NOT NULL,
    subtype      text NOT NULL,
    config       jsonb NOT NULL DEFAULT '{}',
    secret_credential_id uuid REFERENCES credentials (id),
    active       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workflow_id, node_id)
);

CREATE TABLE schedules (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    trigger_id    uuid NOT NULL UNIQUE REFERENCES triggers (id),
    cron          text NOT NULL,
    timezone      text NOT NULL DEFAULT 'UTC',
    missed_policy text NOT NULL DEFAULT 'skip' CHECK (missed_policy IN ('skip', 'run_once')),
    next_fire_at  timestamptz,
    last_fired_at timestamptz,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE active;

CREATE TABLE queue (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    topic        text NOT NULL,
    payload      jsonb NOT NULL,
    dedupe_key   text,
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    available_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_ready ON queue (topic, available_at);
CREATE UNIQUE INDEX queue_dedupe ON queue (workspace_id, topic, dedupe_key)
    WHERE dedupe_key IS NOT NULL;

CREATE TABLE dead_letters (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    topic        text NOT NULL,
    payload      jsonb NOT NULL,
    error        text NOT NULL,
    attempts     integer NOT NULL,
    source_id    text,
    replayed_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Agents at work ---------------------------------------------------------------------

CREATE TABLE episodes (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    agent_id      uuid NOT NULL REFERENCES agents (id),
    agent_version integer NOT NULL,
    run_id        uuid REFERENCES runs (id),
    node_run_id   uuid REFERENCES node_runs (id),
    thread_id     uuid,
    parent_episode_id uuid REFERENCES episodes (id),
    input         jsonb NOT NULL DEFAULT '{}',
    tool_calls    jsonb NOT NULL DEFAULT '[]',
    decisions     jsonb NOT NULL DEFAULT '[]',
    recalled      jsonb NOT NULL DEFAULT '[]',
    outcome       text NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'success', 'failure', 'denied')),
    output        jsonb,
    cost_usd      numeric(14, 6) NOT NULL DEFAULT 0,
    duration_ms   integer,
    feedback_rating smallint CHECK (feedback_rating BETWEEN -1 AND 5),
    feedback_correction text,
    summary       text,
    embedding     vector(384),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX episodes_agent ON episodes (workspace_id, agent_id, created_at DESC);

CREATE TABLE llm_usage (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    run_id       uuid REFERENCES runs (id),
    node_run_id  uuid REFERENCES node_runs (id),
    agent_id     uuid REFERENCES agents (id),
    episode_id   uuid REFERENCES episodes (id),
    model        text NOT NULL,
    provider     text NOT NULL,
    tokens_in    integer NOT NULL DEFAULT 0,
    tokens_out   integer NOT NULL DEFAULT 0,
    cost_usd     numeric(14, 6) NOT NULL DEFAULT 0,
    latency_ms   integer NOT NULL DEFAULT 0,
    status       text NOT NULL DEFAULT 'ok',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX llm_usage_month ON llm_usage (workspace_id, created_at);

CREATE TABLE blobs (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    key          text NOT NULL UNIQUE,
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    sha256       text NOT NULL,
    content_type text NOT NULL DEFAULT 'application/json',
    store        text NOT NULL CHECK (store IN ('local', 's3')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Tenant isolation: one policy shape on every tenant-owned table ----------------------

ALTER TABLE workspaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE workspaces FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON workspaces
    USING (id = loom_current_workspace())
    WITH CHECK (id = loom_current_workspace());

-- Later migrations call loom_isolate('new_table') for each tenant table they add.
CREATE FUNCTION loom_isolate(t regclass) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s '
        'USING (workspace_id = loom_current_workspace()) '
        'WITH CHECK (workspace_id = loom_current_workspace())', t);
END
$$;

SELECT loom_isolate(c.oid::regclass)
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'workspace_id' AND NOT a.attisdropped
WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace;

-- The application role: data rights only, nothing owned -------------------------------

GRANT USAGE ON SCHEMA public TO loom_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO loom_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO loom_app;
REVOKE ALL ON schema_migrations FROM loom_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO loom_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO loom_app;
