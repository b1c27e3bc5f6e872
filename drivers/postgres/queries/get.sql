-- One event by id, in outboxdriver.ScanEventRow's column order.
SELECT seq, id, type, topic, key, payload, headers, status, attempts, coalesce(last_error, ''),
    created_at, next_attempt_at, delivered_at, coalesce(locked_by, ''), locked_until
FROM {{.Table}} WHERE id = $1
