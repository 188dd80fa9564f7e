-- Historical findings: episodes a detector found in feedback whose evidence lies entirely
-- in the past (an import of old exports, a replay long after the fact). They are reported,
-- never raised as work and never announced on actions.v1, so no customer is told "we did"
-- about something long over. One row per (theme, episode), the episode named by the event
-- time of its trigger. Portable SQL (SQLite and PostgreSQL), as 3001.
CREATE TABLE IF NOT EXISTS trends_findings (
    theme TEXT NOT NULL,
    triggered_at_ms BIGINT NOT NULL,
    evidence_end_ms BIGINT NOT NULL,
    found_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    evidence_json TEXT NOT NULL,
    PRIMARY KEY (theme, triggered_at_ms)
);
CREATE INDEX IF NOT EXISTS trends_findings_triggered ON trends_findings (triggered_at_ms);
