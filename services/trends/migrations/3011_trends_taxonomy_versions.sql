-- Taxonomy versions (services/trends/src/store/taxonomy.rs): the first is the taxonomy
-- file; each change to a theme proposes a new one, which ops may preview and apply. The
-- applied versions form one line: `applied_seq` is unique, so of two proposals based on
-- the same version only the first applied wins. Portable SQL, as 3001.
CREATE TABLE IF NOT EXISTS trends_taxonomy_versions (
    version TEXT PRIMARY KEY,
    seq BIGINT NOT NULL UNIQUE,
    based_on TEXT,
    taxonomy_json TEXT NOT NULL,
    change TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- Position in the line of applied versions (1 = the file's); NULL while proposed.
    applied_seq BIGINT UNIQUE,
    applied_at_ms BIGINT,
    reclassify_since_ms BIGINT,
    reclassify_until_ms BIGINT,
    -- Set once taxonomy.v1 acknowledged the applied version.
    published_at_ms BIGINT
);
