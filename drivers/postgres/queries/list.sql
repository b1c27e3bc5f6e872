-- Events after seq $1, filtered by status $2, type $3, key $4 (empty: any)
-- and created_at in [$5, $6) (NULL: unbounded), topic $8 and last_error $9
-- (empty: any), in seq order, at most $7, in outboxdriver.ScanEventRow's
-- column order.
SELECT seq, id, type, topic, key, payload, headers, status, attempts, coalesce(last_error, ''),
    created_at, next_attempt_at, delivered_at, coalesce(nullif(nullif(locked_by, 'retry'), 'parked'), ''), locked_until
FROM {{.Table}}
WHERE seq > $1
  AND ($2 = '' OR status = $2)
  AND ($3 = '' OR type = $3)
  AND ($4 = '' OR key = $4)
  AND ($5::timestamptz IS NULL OR created_at >= $5)
  AND ($6::timestamptz IS NULL OR created_at < $6)
  AND ($8 = '' OR topic = $8)
  AND ($9 = '' OR last_error = $9)
ORDER BY seq LIMIT $7
