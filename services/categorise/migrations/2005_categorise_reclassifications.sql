-- Reclassification jobs, one per taxonomy version applied with a period: every instance
-- that reads the version inserts it (ON CONFLICT DO NOTHING), one claims it with a lease
-- (claimed_by, lease_until_ms) and renews it as it goes; another takes it over when the
-- lease expires. done_at_ms is set once it finished; the counts say how far it came.
CREATE TABLE IF NOT EXISTS categorise_reclassifications (
    version TEXT PRIMARY KEY,
    since_ms BIGINT NOT NULL,
    until_ms BIGINT NOT NULL,
    -- The version's taxonomy as JSON: the job classifies with it, not with whatever is
    -- live by the time it runs.
    taxonomy TEXT NOT NULL,
    claimed_by TEXT,
    lease_until_ms BIGINT,
    done_at_ms BIGINT,
    read_count BIGINT NOT NULL DEFAULT 0,
    total_count BIGINT NOT NULL DEFAULT 0,
    changed_count BIGINT NOT NULL DEFAULT 0,
    unchanged_count BIGINT NOT NULL DEFAULT 0,
    skipped_count BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);
