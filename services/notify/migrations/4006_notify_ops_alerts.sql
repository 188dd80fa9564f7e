-- Ops alerts (chat and webhook messages to the ops team when an action is raised,
-- reopened or escalates). One row per alert decided for a route: sent (its message is
-- a row of notify_deliveries with an `ops_*` channel and the same id) or suppressed by
-- the route's quiet period. The alert's identity (route, action, alert) is unique, so a
-- replayed actions.v1 record, or a second notify replica, adds nothing.
-- `alert` is `raised`, `reopened:<reopen count>` or `escalated:<level>`.
CREATE TABLE notify_ops_alerts (
    alert_id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    action_id TEXT NOT NULL,
    theme TEXT NOT NULL,
    alert TEXT NOT NULL,
    -- Distinct customers of the action when the alert was decided: the baseline of
    -- the next escalation.
    distinct_customers BIGINT NOT NULL,
    -- Event time of the actions.v1 record (the quiet period runs on it).
    decided_at_ms BIGINT NOT NULL,
    -- `queued`, `suppressed` (quiet period) or `unwanted` (the route's `events` leave this
    -- kind out; kept as the baseline of the next escalation).
    outcome TEXT NOT NULL,
    UNIQUE (route, action_id, alert)
);
CREATE INDEX notify_ops_alerts_quiet ON notify_ops_alerts (route, theme, outcome, decided_at_ms);
CREATE INDEX notify_ops_alerts_by_action ON notify_ops_alerts (route, action_id, decided_at_ms);
