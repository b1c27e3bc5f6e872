-- One event by id, in outboxdriver.ScanEventRow's column order.
SELECT seq, id, type, topic, event_key, payload, headers, status, attempts, COALESCE(last_error, ''),
    created_at, next_attempt_at, delivered_at, COALESCE(locked_by, ''), locked_until
FROM {{.Table}} WHERE id = ?
