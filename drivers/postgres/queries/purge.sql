-- Deletes at most $2 events delivered before $1, oldest first.
DELETE FROM {{.Table}} WHERE seq IN (
    SELECT seq FROM {{.Table}} WHERE status = 'delivered' AND delivered_at < $1
    ORDER BY delivered_at LIMIT $2)
