-- notify: when the customer gave the feedback a delivery answers, so the end-to-end
-- latency (feedback → "you said, we did" delivered) can be measured. Nullable: rows
-- queued before this migration have no such time and are simply not measured.
ALTER TABLE notify_deliveries ADD COLUMN said_at_ms BIGINT;
