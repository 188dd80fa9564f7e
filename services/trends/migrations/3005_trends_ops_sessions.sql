-- /ops sign-ins (services/trends/src/auth.rs). The session id lives only in the operator's
-- cookie; this table holds its SHA-256, so reading it yields no usable cookie. Shared by
-- every trends replica, so a session works on all of them and signing out ends it on all.
CREATE TABLE IF NOT EXISTS trends_ops_sessions (
    id_hash TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS trends_ops_sessions_expiry ON trends_ops_sessions (expires_at_ms);
