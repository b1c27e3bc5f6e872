-- Deletes at most the second parameter's number of events delivered before
-- the first, oldest first. An event whose business acknowledgment is
-- awaiting or unacknowledged is not done: it is kept.
DELETE FROM {{.Table}} WHERE status = 'delivered' AND delivered_at < ?
  AND NOT EXISTS (SELECT 1 FROM {{.AckTable}} a WHERE a.event_id = {{.Table}}.id AND a.status IN ('awaiting', 'unacknowledged'))
ORDER BY delivered_at LIMIT ?
