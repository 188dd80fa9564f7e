-- The language the customer wrote in (`language` holds the one their locale asks
-- for), so a message can fall back to it when there is no template for the locale.
ALTER TABLE notify_mentions ADD COLUMN text_language TEXT;

-- Customers owed a message about an action who were not sent one, and why
-- (`no_consent`, `no_route`). Keyed like the outbox, so a replayed actions.v1 record
-- counts nobody twice. Holds no contact data or text, only the pseudonymous id.
CREATE TABLE IF NOT EXISTS notify_skips (
    skip_id TEXT NOT NULL,
    action_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (action_id, customer_id)
);

-- Erased customers, so feedback of theirs that arrives late or is replayed after the
-- erasure (the topics are consumed independently) is not projected again. Feedback
-- received after the erasure is new and counts.
CREATE TABLE IF NOT EXISTS notify_erasures (
    customer_id TEXT PRIMARY KEY,
    erased_at_ms BIGINT NOT NULL
);
