-- Deletes at most $2 events delivered before $1, in seq order (the order
-- they were written, so the oldest first but for retried ones): the scan of
-- the primary key or of the delivered_at BRIN index, as the planner sees fit.
DELETE FROM {{.Table}} WHERE seq IN (
    SELECT seq FROM {{.Table}} WHERE status = 'delivered' AND delivered_at < $1
    ORDER BY seq LIMIT $2)
