-- Memory for AI_AGENT nodes: conversation turns and a running summary per memory key, and
-- vector memory (pgvector, 384 dimensions: the embedding model of local mode) per collection.

CREATE TABLE memory_turns (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    memory_key   text NOT NULL CHECK (length(memory_key) BETWEEN 1 AND 500),
    role         text NOT NULL CHECK (role IN ('user', 'assistant')),
    content      text NOT NULL,
    run_id       uuid REFERENCES runs (id),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX memory_turns_key ON memory_turns (workspace_id, memory_key, id);
SELECT loom_isolate('memory_turns');

-- What the turns up to and including summarized_through say, in a few sentences.
CREATE TABLE memory_summaries (
    workspace_id      uuid NOT NULL REFERENCES workspaces (id),
    memory_key        text NOT NULL CHECK (length(memory_key) BETWEEN 1 AND 500),
    summary           text NOT NULL,
    summarized_through bigint NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, memory_key)
);
SELECT loom_isolate('memory_summaries');

CREATE TABLE memory_vectors (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    collection   text NOT NULL CHECK (length(collection) BETWEEN 1 AND 200),
    content      text NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}',
    embedding    vector(384) NOT NULL,
    run_id       uuid REFERENCES runs (id),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX memory_vectors_collection ON memory_vectors (workspace_id, collection);
CREATE INDEX memory_vectors_embedding ON memory_vectors USING hnsw (embedding vector_cosine_ops);
SELECT loom_isolate('memory_vectors');
