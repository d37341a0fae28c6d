-- Governed agents: what each execution (episode) did and how it ended, the audit log of
-- governance decisions and promotions, chat threads, graduation exams, and tool approvals
-- filed through human-in-the-loop requests that belong to an episode rather than a run.

ALTER TABLE episodes
    ADD COLUMN kind text NOT NULL DEFAULT 'node'
        CHECK (kind IN ('chat', 'node', 'exam', 'delegation')),
    ADD COLUMN error text,
    ADD COLUMN usage jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN finished_at timestamptz,
    ADD COLUMN feedback_at timestamptz;
CREATE INDEX episodes_recall ON episodes USING hnsw (embedding vector_cosine_ops);
CREATE INDEX episodes_parent ON episodes (parent_episode_id) WHERE parent_episode_id IS NOT NULL;

-- Every governance decision and every change of maturity, append-only.
CREATE TABLE agent_audit (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    agent_id      uuid NOT NULL REFERENCES agents (id),
    agent_version integer,
    episode_id    uuid REFERENCES episodes (id),
    event         text NOT NULL
                  CHECK (event IN ('tool_decision', 'promoted', 'exam_failed', 'published',
                                   'maturity_set')),
    detail        jsonb NOT NULL DEFAULT '{}',
    actor         text NOT NULL DEFAULT 'system',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_audit_agent ON agent_audit (workspace_id, agent_id, id DESC);
CREATE TRIGGER agent_audit_append_only BEFORE UPDATE OR DELETE ON agent_audit
    FOR EACH ROW EXECUTE FUNCTION loom_forbid_change();
SELECT loom_isolate('agent_audit');

CREATE TABLE threads (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    agent_id      uuid NOT NULL REFERENCES agents (id),
    created_by    uuid REFERENCES users (id),
    summary       text,
    summarized_through bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX threads_agent ON threads (workspace_id, agent_id, updated_at DESC);
SELECT loom_isolate('threads');

CREATE TABLE thread_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    thread_id     uuid NOT NULL REFERENCES threads (id),
    role          text NOT NULL CHECK (role IN ('user', 'assistant')),
    content       text NOT NULL,
    episode_id    uuid REFERENCES episodes (id),
    tool_calls    jsonb NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX thread_messages_thread ON thread_messages (workspace_id, thread_id, id);
SELECT loom_isolate('thread_messages');

CREATE TABLE agent_exams (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    agent_id      uuid NOT NULL REFERENCES agents (id),
    agent_version integer NOT NULL,
    from_level    text NOT NULL,
    to_level      text NOT NULL,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'passed', 'failed', 'error')),
    cases         jsonb NOT NULL,
    report        jsonb,
    started_by    text NOT NULL DEFAULT 'api',
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX agent_exams_agent ON agent_exams (workspace_id, agent_id, created_at DESC);
-- One exam at a time per agent version.
CREATE UNIQUE INDEX agent_exams_running ON agent_exams (agent_id, agent_version)
    WHERE status = 'running';
SELECT loom_isolate('agent_exams');

-- A tool call waiting for approval is a human-in-the-loop request of its episode: it has
-- no run when the agent was called from chat, and answering it resumes no workflow node.
ALTER TABLE hil_requests
    ALTER COLUMN run_id DROP NOT NULL,
    ALTER COLUMN node_run_id DROP NOT NULL,
    ADD COLUMN episode_id uuid REFERENCES episodes (id),
    DROP CONSTRAINT hil_requests_kind_check,
    ADD CONSTRAINT hil_requests_kind_check
        CHECK (kind IN ('approval', 'input', 'tool_approval')),
    ADD CONSTRAINT hil_requests_owner
        CHECK ((kind = 'tool_approval' AND episode_id IS NOT NULL)
               OR (kind <> 'tool_approval' AND run_id IS NOT NULL AND node_run_id IS NOT NULL));
CREATE UNIQUE INDEX hil_requests_open_episode ON hil_requests (episode_id)
    WHERE status = 'pending' AND episode_id IS NOT NULL;
