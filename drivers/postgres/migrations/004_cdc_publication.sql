-- outboxkit PostgreSQL schema, version 4.
-- The publication the CDC relay (postgres.NewCDC) streams through its
-- logical replication slot: the outbox table's INSERTs (new events) and
-- UPDATEs (a retry marks its rows locked_by = 'retry'; the relay ignores
-- every other update, its own writes included). Creating it needs no
-- wal_level=logical; streaming does. Polling relays ignore it.
DO $outboxkit$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '{{pubname}}') THEN
        CREATE PUBLICATION {{pub}} FOR TABLE {{.Table}} WITH (publish = 'insert, update');
    END IF;
END
$outboxkit$;

-- The CDC relay's state per slot: whether the events committed before the
-- slot was created (which its stream does not carry) were all read from
-- the table and settled.
CREATE TABLE IF NOT EXISTS {{state}} (
    slot         text    PRIMARY KEY,
    backlog_done boolean NOT NULL DEFAULT false
);
