-- Emerging topics (services/trends/src/emerging.rs): the feedback they are found in — what
-- matched no theme, and negative feedback of any kind — one row per feedback, so a replayed
-- record is a no-op. `phrases` holds the feedback's phrases (closeloop_classify::emerging),
-- one `key<TAB>text` per line. Personal data: `excerpt` and `phrases` are the customer's
-- words, `customer_id` their id; an erasure replaces the id with the pseudonym and empties
-- both. Portable SQL (SQLite and PostgreSQL), as 3001.
CREATE TABLE IF NOT EXISTS trends_topic_feedback (
    feedback_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    source TEXT NOT NULL,
    language TEXT NOT NULL,
    sentiment TEXT NOT NULL,
    -- 1 when the feedback matched at least one theme (then it is here for being negative).
    matched BIGINT NOT NULL,
    excerpt TEXT,
    phrases TEXT NOT NULL,
    given_at_ms BIGINT NOT NULL
);
-- The lists are computed over a span of event time; an erasure finds the customer's rows.
CREATE INDEX IF NOT EXISTS trends_topic_feedback_time ON trends_topic_feedback (given_at_ms);
CREATE INDEX IF NOT EXISTS trends_topic_feedback_customer ON trends_topic_feedback (customer_id);
