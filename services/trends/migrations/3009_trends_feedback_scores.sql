-- Theme impact on NPS and rating (services/trends/src/impact.rs): every categorised
-- feedback that carries an NPS answer (0–10) or a rating (1–5), one row per feedback, so a
-- replayed record is a no-op. `themes` and `negative_themes` hold theme ids, one per line:
-- those the feedback mentions, and those it mentions negatively. No personal data: no
-- customer id, no text — a score and theme ids, linked to the customer only through the
-- feedback id, which the mentions keep under the pseudonym after an erasure too; an
-- erasure therefore has nothing to change here. Portable SQL (SQLite and PostgreSQL), as 3001.
CREATE TABLE IF NOT EXISTS trends_feedback_scores (
    feedback_id TEXT PRIMARY KEY,
    nps BIGINT,
    rating BIGINT,
    themes TEXT NOT NULL,
    negative_themes TEXT NOT NULL,
    given_at_ms BIGINT NOT NULL
);
-- The impact is computed over a span of event time.
CREATE INDEX IF NOT EXISTS trends_feedback_scores_time ON trends_feedback_scores (given_at_ms);
