-- trends: what evidence and the action workflow need beyond the first version.
-- Portable SQL (SQLite and PostgreSQL), as 3001.

-- NPS for the evidence's average; whether the detector counted the mention (0 when it
-- arrived later than the allowed lateness), so a restart replays exactly what counted.
ALTER TABLE trends_mentions ADD COLUMN nps BIGINT;
ALTER TABLE trends_mentions ADD COLUMN counted BIGINT NOT NULL DEFAULT 1;

ALTER TABLE trends_actions ADD COLUMN acknowledged_by TEXT;
ALTER TABLE trends_actions ADD COLUMN acknowledged_at_ms BIGINT;
ALTER TABLE trends_actions ADD COLUMN assignee TEXT;
ALTER TABLE trends_actions ADD COLUMN reopened_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE trends_actions ADD COLUMN reopened_by TEXT;

-- One unresolved action per theme: `acknowledged` is as unresolved as `open`.
DROP INDEX IF EXISTS trends_actions_one_open;
CREATE UNIQUE INDEX IF NOT EXISTS trends_actions_one_unresolved
    ON trends_actions (theme) WHERE status <> 'resolved';
CREATE INDEX IF NOT EXISTS trends_actions_updated ON trends_actions (updated_at_ms);

-- Every transition of every action, for its history (who did what when).
CREATE TABLE IF NOT EXISTS trends_action_log (
    action_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT,
    event_id TEXT NOT NULL PRIMARY KEY
);
CREATE INDEX IF NOT EXISTS trends_action_log_action ON trends_action_log (action_id, at_ms);
