-- What the queue sweep needs to rebuild a lost Redis queue from PostgreSQL: when each chunk was
-- last put in the queue (a chunk missing from Redis is requeued only once it is older than the
-- sweep's grace period, so a chunk between its commit and its push is not requeued), how often the
-- sweep had to requeue it (a chunk lost too often is given up), and the delivery attempt its
-- counted failures reached (a rebuilt message keeps its retry budget). The job shows when its
-- chunks were last requeued.
ALTER TABLE bulk_job_chunks
    ADD COLUMN queued_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN requeues  integer NOT NULL DEFAULT 0,
    ADD COLUMN attempt   integer NOT NULL DEFAULT 0;

ALTER TABLE bulk_jobs
    ADD COLUMN chunks_requeued  integer NOT NULL DEFAULT 0,
    ADD COLUMN last_requeued_at timestamptz;

-- The sweep looks for pending chunks only; once done or dead a chunk is out of this index.
CREATE INDEX bulk_job_chunks_pending ON bulk_job_chunks (queued_at) WHERE status = 'pending';
