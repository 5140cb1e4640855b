-- Retention and erasure (issue 11): content older than a client's retention is emptied by a daily job.
CREATE TABLE scheduled_jobs (
    name         text        PRIMARY KEY,
    owner        text        NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz
);
COMMENT ON TABLE scheduled_jobs IS 'Periodic jobs (retention): the last run, claimed by one process by moving started_at.';
COMMENT ON COLUMN scheduled_jobs.finished_at IS 'NULL while the run goes on, or when it died (the next run catches up)';
ALTER TABLE scheduled_jobs ENABLE ROW LEVEL SECURITY;

-- What retention still has to empty, oldest first: rows it has emptied leave these indexes, so a daily run reads
-- only the rows it changes.
CREATE INDEX messages_content ON messages (created_at, id)
    WHERE text IS NOT NULL OR payload IS NOT NULL OR error IS NOT NULL OR media_path IS NOT NULL;
CREATE INDEX message_statuses_content ON message_statuses (client, recorded_at) WHERE payload <> '{}'::jsonb;
