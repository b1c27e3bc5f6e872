-- outboxkit MySQL/MariaDB schema, version 2.
-- The claim's gap check counts, per key, the pending events up to the last
-- one claimed (see events.go, claimGaps). A locking read can see part of a
-- transaction that commits while the scan runs (it skips the rows still
-- locked by the committing writer), so without this check one key's later
-- events could be claimed before its earlier ones.
ALTER TABLE {{.Table}} ADD KEY pending_key_idx (status, event_key, seq);
