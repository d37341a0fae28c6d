-- Chat threads: a title for lists, one turn at a time per thread (a turn holds the thread
-- from its start until its reply is stored; a turn whose process died is taken over once
-- it is older than the longest a turn may last), and episodes that name their thread.

ALTER TABLE threads
    ADD COLUMN title text NOT NULL DEFAULT '' CHECK (length(title) <= 200),
    ADD COLUMN turn_started_at timestamptz;

ALTER TABLE episodes
    ADD CONSTRAINT episodes_thread_fk FOREIGN KEY (thread_id) REFERENCES threads (id);
