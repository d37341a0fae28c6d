-- The workflow builder: a conversation per session, each turn with the draft it produced.
-- A session holds the current draft (always a definition that validates) and, once saved,
-- the workflow it became. Turns are history: appended, never changed.

CREATE TABLE builder_sessions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    created_by   uuid REFERENCES users (id),
    model        text NOT NULL CHECK (length(model) BETWEEN 3 AND 200),
    credential_id text CHECK (length(credential_id) <= 200),
    description  text NOT NULL CHECK (length(description) BETWEEN 1 AND 20000),
    draft        jsonb,
    gaps         jsonb NOT NULL DEFAULT '[]',
    questions    jsonb NOT NULL DEFAULT '[]',
    explanation  text NOT NULL DEFAULT '',
    turns        integer NOT NULL DEFAULT 0,
    workflow_id  uuid REFERENCES workflows (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX builder_sessions_recent ON builder_sessions (workspace_id, updated_at DESC);
SELECT loom_isolate('builder_sessions');

CREATE TABLE builder_turns (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    session_id    uuid NOT NULL REFERENCES builder_sessions (id),
    seq           integer NOT NULL CHECK (seq >= 1),
    message       text NOT NULL CHECK (length(message) BETWEEN 1 AND 20000),
    draft         jsonb NOT NULL,
    explanation   text NOT NULL,
    questions     jsonb NOT NULL,
    gaps          jsonb NOT NULL,
    diff          jsonb,
    repair_rounds integer NOT NULL CHECK (repair_rounds >= 0),
    model         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
);
CREATE TRIGGER builder_turns_append_only BEFORE UPDATE OR DELETE ON builder_turns
    FOR EACH ROW EXECUTE FUNCTION loom_forbid_change();
SELECT loom_isolate('builder_turns');
