-- Erased customers, by pseudonym (`erased:<sha256>`, see closeloop_events::erased_customer_id),
-- never by their id. feedback.raw.v1 and privacy.erasure.v1 are consumed independently,
-- so feedback received before the erasure may be handled after it (backlog, replay);
-- such feedback is stored under the pseudonym, not the id.
CREATE TABLE IF NOT EXISTS categorise_erasures (
    customer_id TEXT PRIMARY KEY,
    erased_at_ms BIGINT NOT NULL
);
