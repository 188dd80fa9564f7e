-- Erasures are scoped: a source's erasure reaches only what came through that source,
-- an admin's every source. Mentions now record their source (NULL for mentions stored
-- before: any erasure of their customer reaches those, as it did before), and the
-- ledger keeps the scope beside the pseudonym: the source's name, or '*' for every
-- source (what every earlier erasure meant).
ALTER TABLE trends_mentions ADD COLUMN source TEXT;
CREATE TABLE trends_erasures_scoped (
    customer_id TEXT NOT NULL,
    source TEXT NOT NULL,
    erased_at_ms BIGINT NOT NULL,
    PRIMARY KEY (customer_id, source)
);
INSERT INTO trends_erasures_scoped (customer_id, source, erased_at_ms)
    SELECT customer_id, '*', erased_at_ms FROM trends_erasures;
DROP TABLE trends_erasures;
ALTER TABLE trends_erasures_scoped RENAME TO trends_erasures;
