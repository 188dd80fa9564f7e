-- One row per feedback, written once (ON CONFLICT DO NOTHING on feedback_id), so a
-- replayed record is categorised exactly once in the store. The text itself is not kept
-- here: it travels on in the categorised event, and notify keeps what it needs.
CREATE TABLE IF NOT EXISTS categorise_feedback (
    feedback_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    touchpoint TEXT,
    language TEXT NOT NULL,
    sentiment TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    themes TEXT NOT NULL,
    rating BIGINT,
    nps BIGINT,
    classifier_version TEXT NOT NULL,
    given_at_ms BIGINT NOT NULL,
    categorised_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS categorise_feedback_customer ON categorise_feedback (customer_id);
