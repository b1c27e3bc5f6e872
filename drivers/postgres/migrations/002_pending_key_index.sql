-- outboxkit PostgreSQL schema, version 2.
-- Per-key order check of the held-transaction claim: "is there a pending
-- event of this key before the ones I claimed?" answered from the index.
-- Only pending rows are indexed, so delivered history costs nothing.
CREATE INDEX IF NOT EXISTS {{idx "pending_key"}} ON {{.Table}} (key, seq) WHERE status = 'pending';
