-- Ack counters: awaiting, rejected, unacknowledged, the oldest awaiting
-- created_at (NULL when none) and the database's now.
SELECT
    (SELECT count(*) FROM {{.AckTable}} WHERE status = 'awaiting'),
    (SELECT count(*) FROM {{.AckTable}} WHERE status = 'rejected'),
    (SELECT count(*) FROM {{.AckTable}} WHERE status = 'unacknowledged'),
    (SELECT min(created_at) FROM {{.AckTable}} WHERE status = 'awaiting'),
    statement_timestamp()
