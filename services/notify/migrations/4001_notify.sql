-- notify's tables. Portable across SQLite and PostgreSQL through sqlx's Any driver:
-- TEXT / BIGINT only, ids as UUID text, times as Unix milliseconds, flags as 0/1.

-- The projection of feedback.categorised.v1 that notify needs to know who to tell what:
-- one row per (feedback, theme). Contact data and the excerpt are kept only for
-- customers who consented (NULL otherwise) and are deleted on erasure.
CREATE TABLE IF NOT EXISTS notify_mentions (
    feedback_id TEXT NOT NULL,
    theme TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    source TEXT NOT NULL,
    language TEXT NOT NULL,
    consent BIGINT NOT NULL,
    email TEXT,
    reference TEXT,
    sentiment TEXT NOT NULL,
    excerpt TEXT,
    given_at_ms BIGINT NOT NULL,
    PRIMARY KEY (feedback_id, theme)
);
CREATE INDEX IF NOT EXISTS notify_mentions_by_theme
    ON notify_mentions (theme, sentiment, given_at_ms);
CREATE INDEX IF NOT EXISTS notify_mentions_by_customer
    ON notify_mentions (customer_id);

-- The persistent outbox: one row per (action, customer), written before anything is
-- sent, so a crash or a replayed actions.v1 record never sends twice and a restart
-- picks up where the worker stopped.
CREATE TABLE IF NOT EXISTS notify_deliveries (
    delivery_id TEXT PRIMARY KEY,
    action_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    source TEXT NOT NULL,
    channel TEXT NOT NULL,
    language TEXT NOT NULL,
    payload TEXT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at_ms BIGINT NOT NULL,
    last_error TEXT,
    last_status_code BIGINT,
    created_at_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT,
    UNIQUE (action_id, customer_id)
);
CREATE INDEX IF NOT EXISTS notify_deliveries_due
    ON notify_deliveries (status, next_attempt_at_ms);
CREATE INDEX IF NOT EXISTS notify_deliveries_by_customer
    ON notify_deliveries (customer_id);
