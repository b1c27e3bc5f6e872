-- outboxkit PostgreSQL schema, version 6.
-- The CDC relay's state per slot gains the table's last seq when the slot
-- was created: an event with a higher seq was inserted after the slot
-- existed, so its slot's stream carries it, and the slot's first stream
-- reads from the table only the pending events up to that seq (those may
-- have committed before the slot and exist only in the table). NULL (a
-- slot created before this version, or one whose creation was cut short):
-- unknown, every pending event is read from the table, as before.
ALTER TABLE {{state}} ADD COLUMN IF NOT EXISTS backlog_seq bigint;
