-- ringback schema, version 7: import jobs hold a lease, so a job left unfinished by a node
-- that died is found and marked failed (its transaction never committed: nothing of it was
-- applied); and recordings carry their SHA-256 for the nodes' local recording caches.
ALTER TABLE imports
    -- The job's node renews this while the job runs; once it has passed, the job is abandoned.
    ADD COLUMN lease_until timestamptz,
    -- Which node runs the job (host:http port): that node, started again, fails its own
    -- unfinished jobs at once without waiting for the lease.
    ADD COLUMN node text;
CREATE INDEX imports_unfinished ON imports (lease_until)
    WHERE status IN ('receiving', 'validating', 'loading');

-- Each recording's SHA-256, kept by the database itself: nodes compare it with the copies
-- in their local recording cache without reading the audio.
ALTER TABLE recordings ADD COLUMN pcm_sha256 bytea GENERATED ALWAYS AS (sha256(pcm)) STORED;
