-- trends: the theme mentions it has seen and the actions it raised.
-- Portable SQL (SQLite and PostgreSQL): TEXT / BIGINT only, times in Unix ms, flags 0/1.

-- One row per (feedback, theme): the primary key makes a replayed record a no-op.
CREATE TABLE IF NOT EXISTS trends_mentions (
    feedback_id TEXT NOT NULL,
    theme TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    negative BIGINT NOT NULL,
    excerpt TEXT NOT NULL,
    channel TEXT NOT NULL,
    touchpoint TEXT,
    rating BIGINT,
    given_at_ms BIGINT NOT NULL,
    PRIMARY KEY (feedback_id, theme)
);

-- Rebuilding a theme's window on start-up and picking excerpts read by theme and time.
CREATE INDEX IF NOT EXISTS trends_mentions_theme_time ON trends_mentions (theme, given_at_ms);

CREATE TABLE IF NOT EXISTS trends_actions (
    action_id TEXT PRIMARY KEY,
    theme TEXT NOT NULL,
    status TEXT NOT NULL,
    raised_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    evidence_json TEXT NOT NULL,
    resolution_json TEXT,
    resolved_at_ms BIGINT,
    -- 1 once the `raised` event was acknowledged by the broker. A row left at 0 (crash
    -- between insert and publish) is announced by the next trigger instead of being lost.
    announced BIGINT NOT NULL DEFAULT 0
);

-- The database, not the code, guarantees one open action per theme, also across
-- several trends instances sharing one database.
CREATE UNIQUE INDEX IF NOT EXISTS trends_actions_one_open ON trends_actions (theme) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS trends_actions_raised ON trends_actions (raised_at_ms);
