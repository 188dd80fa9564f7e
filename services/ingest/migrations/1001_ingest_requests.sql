-- Idempotency: one row per (source, Idempotency-Key). A request first claims its key
-- (status 'pending', with the event ids it will publish), publishes, then stores the
-- answer (status 'done'). A retry gets the stored answer; a retry after a crash between
-- claim and answer re-publishes the same event ids, which downstream dedupes.
CREATE TABLE IF NOT EXISTS ingest_requests (
    source TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    event_ids TEXT NOT NULL,
    status TEXT NOT NULL,
    response TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (source, idempotency_key)
);
