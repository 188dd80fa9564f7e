-- Per-customer notification preferences: the last customers.preferences.v1 record
-- (channels, language, unsubscribed) and the newest consent, from that record or from
-- the customer's feedback, whichever is newer. Deleted on erasure.
CREATE TABLE notify_preferences (
    customer_id TEXT PRIMARY KEY,
    consent BIGINT NOT NULL,
    -- When that consent was given: the feedback's receipt or the record's updated_at.
    consent_at_ms BIGINT NOT NULL,
    -- Allowed channels, comma-separated; NULL: any.
    channels TEXT,
    language TEXT,
    unsubscribed BIGINT NOT NULL,
    -- updated_at of the last preference record applied; NULL while only feedback spoke.
    updated_at_ms BIGINT,
    -- The source (or the customer's own unsubscribe) that changed the row last, which
    -- a source's scoped erasure matches.
    set_by TEXT NOT NULL
);

-- The frequency cap: when each customer's current contact period opened, and with
-- which delivery. A message is sent only by whoever moves `opened_at_ms` forward past
-- the end of the period, in one conditional write, so two notify replicas never both
-- send within one period.
CREATE TABLE notify_contact_periods (
    customer_id TEXT PRIMARY KEY,
    opened_at_ms BIGINT NOT NULL,
    delivery_id TEXT NOT NULL
);

-- A held delivery (status 'held', due when its customer's period ends) folded into
-- another one's combined message names that one here.
ALTER TABLE notify_deliveries ADD COLUMN combined_into TEXT;
CREATE INDEX notify_deliveries_combined ON notify_deliveries (combined_into);
