-- trends: the measured effect of each resolved action (did "we did" work?).
-- Portable SQL (SQLite and PostgreSQL), as 3001.

-- The latest measurement per action, for the resolution at `resolved_at_ms`: a row of an
-- earlier resolution (the action was reopened and resolved again) is replaced, and one
-- of a reopened action is not shown.
CREATE TABLE IF NOT EXISTS trends_effects (
    action_id TEXT PRIMARY KEY,
    resolved_at_ms BIGINT NOT NULL,
    verdict TEXT NOT NULL,
    -- 1 once the after window has passed in event time: the verdict no longer changes.
    final BIGINT NOT NULL DEFAULT 0,
    effect_json TEXT NOT NULL,
    -- 1 once the final verdict's `effect_measured` event was acknowledged by the broker,
    -- so it is published once across restarts and replicas.
    announced BIGINT NOT NULL DEFAULT 0,
    -- Unix ms (wall clock) until which one instance holds the right to publish it: two
    -- replicas measuring the same action do not both publish; a claim left by a crash
    -- expires and the next round publishes.
    claimed_until_ms BIGINT
);
