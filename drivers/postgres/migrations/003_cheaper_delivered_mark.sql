-- outboxkit PostgreSQL schema, version 3.
-- Marking an event delivered writes a new row version (the status change
-- cannot be a HOT update: partial indexes name status), and that version
-- gets an entry in every B-tree index whose predicate it matches. Version 1
-- gave a delivered row four such entries (primary key, id, (status, seq),
-- delivered_at); this leaves two.
--
-- Admin reads by status: pending rows have the "pending" index; dead rows
-- get the partial index below; delivered rows are most of the table, so a
-- seq-ordered scan of the primary key finds them at once.
CREATE INDEX IF NOT EXISTS {{idx "dead"}} ON {{.Table}} (seq) WHERE status = 'dead';
DROP INDEX IF EXISTS {{idx "status"}};

-- Purge (delivered before a time, oldest first) and the "delivered in the
-- last minute" counter read delivered_at through a BRIN index: delivered_at
-- grows with the table's physical order, a BRIN entry summarizes a range of
-- pages, and a new row version costs it at most a summary update.
CREATE INDEX IF NOT EXISTS {{idx "delivered_brin"}} ON {{.Table}} USING brin (delivered_at) WITH (autosummarize = on) WHERE status = 'delivered';
DROP INDEX IF EXISTS {{idx "delivered"}};
