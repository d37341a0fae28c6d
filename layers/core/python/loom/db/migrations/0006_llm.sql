-- The LLM gateway: spend per run (budgets per run), spend per workspace and month (budgets
-- per workspace, kept as a counter so a check never sums a month of rows), and the token
-- buckets of its rate limits, shared by every process through these rows.

CREATE INDEX llm_usage_run ON llm_usage (run_id) WHERE run_id IS NOT NULL;
-- A cheap model's call costs well under a millionth of a dollar: keep ten decimal places,
-- so what budgets sum is what was spent.
ALTER TABLE llm_usage ALTER COLUMN cost_usd TYPE numeric(20, 10);

-- Updated in the transaction that records the usage rows it sums.
CREATE TABLE llm_spend (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    month        date NOT NULL CHECK (extract(day FROM month) = 1),
    cost_usd     numeric(20, 10) NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, month)
);
SELECT loom_isolate('llm_spend');

-- One bucket per key ('calls', 'provider:<name>' for a workspace's own keys): tokens left
-- as of refilled_at. Taken by one INSERT ... ON CONFLICT DO UPDATE, so two processes can
-- never both spend the last token.
CREATE TABLE llm_rate_buckets (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    tokens       double precision NOT NULL,
    refilled_at  timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, key)
);
SELECT loom_isolate('llm_rate_buckets');

-- The buckets of the platform's own provider keys, which every workspace draws on. They
-- hold a count and a time per provider, no tenant data, so they are not tenant-owned.
CREATE TABLE llm_platform_buckets (
    key          text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 200),
    tokens       double precision NOT NULL,
    refilled_at  timestamptz NOT NULL
);
