-- The digest of the feedback's content (Feedback::content_hash) stored with its id, so a
-- record that comes again is republished only when it is the same feedback: a second
-- body under a known id publishes nothing, and trends and notify never see it.
-- NULL for rows stored before this column existed: nothing of a replay is republished.
ALTER TABLE categorise_feedback ADD COLUMN content_hash TEXT;
