-- Ack counters: awaiting, rejected, unacknowledged, the oldest awaiting
-- created_at (NULL when none) and the database's now.
SELECT
    (SELECT COUNT(*) FROM {{.AckTable}} WHERE status = 'awaiting'),
    (SELECT COUNT(*) FROM {{.AckTable}} WHERE status = 'rejected'),
    (SELECT COUNT(*) FROM {{.AckTable}} WHERE status = 'unacknowledged'),
    (SELECT MIN(created_at) FROM {{.AckTable}} WHERE status = 'awaiting'),
    UTC_TIMESTAMP(6)
