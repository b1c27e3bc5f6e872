-- Deletes at most $2 events delivered before $1, in seq order (the order
-- they were written, so the oldest first but for retried ones): the scan of
-- the primary key or of the delivered_at BRIN index, as the planner sees fit.
-- An event whose business acknowledgment is awaiting or unacknowledged is
-- not done: it is kept.
DELETE FROM {{.Table}} WHERE seq IN (
    SELECT seq FROM {{.Table}} e WHERE e.status = 'delivered' AND e.delivered_at < $1
      AND NOT EXISTS (SELECT 1 FROM {{.AckTable}} a WHERE a.event_id = e.id AND a.status IN ('awaiting', 'unacknowledged'))
    ORDER BY seq LIMIT $2)
