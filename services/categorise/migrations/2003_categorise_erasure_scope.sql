-- Erasures are scoped: a source's erasure reaches only what came through that source,
-- an admin's every source. The ledger keeps the scope beside the pseudonym: `source`
-- is the source's name, or '*' for every source (what every earlier erasure meant).
CREATE TABLE categorise_erasures_scoped (
    customer_id TEXT NOT NULL,
    source TEXT NOT NULL,
    erased_at_ms BIGINT NOT NULL,
    PRIMARY KEY (customer_id, source)
);
INSERT INTO categorise_erasures_scoped (customer_id, source, erased_at_ms)
    SELECT customer_id, '*', erased_at_ms FROM categorise_erasures;
DROP TABLE categorise_erasures;
ALTER TABLE categorise_erasures_scoped RENAME TO categorise_erasures;
