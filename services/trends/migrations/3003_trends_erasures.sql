-- Erased customers, by pseudonym (`erased:<sha256>`, see closeloop_events::erased_customer_id),
-- never by their id. feedback.themes.v1 and privacy.erasure.v1 are consumed
-- independently, so a mention given before the erasure may arrive after it; it is then
-- stored under the pseudonym and without its excerpt.
CREATE TABLE IF NOT EXISTS trends_erasures (
    customer_id TEXT PRIMARY KEY,
    erased_at_ms BIGINT NOT NULL
);
