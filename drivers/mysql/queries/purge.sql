-- Deletes at most the second parameter's number of events delivered before
-- the first, oldest first.
DELETE FROM {{.Table}} WHERE status = 'delivered' AND delivered_at < ? ORDER BY delivered_at LIMIT ?
