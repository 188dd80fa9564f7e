-- Event identity: one row per accepted event id with a digest of the event's content
-- (Feedback::content_hash), written before the event is published. The same id with the
-- same content is a retry (accepted again, downstream dedupes); with other content it is
-- refused, from any source. Rows older than INGEST_MAX_EVENT_AGE_DAYS (by given_at) are
-- purged: feedback that old is refused anyway.
CREATE TABLE IF NOT EXISTS ingest_event_ids (
    event_id TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    given_at_ms BIGINT NOT NULL,
    accepted_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ingest_event_ids_given_at ON ingest_event_ids (given_at_ms);
