-- One problem, one action (services/trends/src/detection.rs, `join`): a theme of the same
-- line of the hierarchy that surges while an action is unresolved joins that action
-- instead of raising its own. Its evidence lives in the action's `evidence_json`
-- (`related`); this table lets the theme find the actions that covered it — for its last
-- resolution (the hysteresis boundary) and for a reopen. Portable SQL, as 3001.
CREATE TABLE IF NOT EXISTS trends_action_themes (
    action_id TEXT NOT NULL,
    theme TEXT NOT NULL,
    joined_at_ms BIGINT NOT NULL,
    PRIMARY KEY (action_id, theme)
);
CREATE INDEX IF NOT EXISTS trends_action_themes_theme ON trends_action_themes (theme);
