-- Erasures are scoped: a source's erasure reaches only what came through that source,
-- an admin's every source. Skips now record the source of the mention they answer
-- (NULL for skips stored before: any erasure of their customer reaches those), and the
-- ledger keeps the scope beside the pseudonym: the source's name, or '*' for every
-- source (what every earlier erasure meant).
ALTER TABLE notify_skips ADD COLUMN source TEXT;
CREATE TABLE notify_erasures_scoped (
    customer_id TEXT NOT NULL,
    source TEXT NOT NULL,
    erased_at_ms BIGINT NOT NULL,
    PRIMARY KEY (customer_id, source)
);
INSERT INTO notify_erasures_scoped (customer_id, source, erased_at_ms)
    SELECT customer_id, '*', erased_at_ms FROM notify_erasures;
DROP TABLE notify_erasures;
ALTER TABLE notify_erasures_scoped RENAME TO notify_erasures;
