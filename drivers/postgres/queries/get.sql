-- One event by id, in outboxdriver.ScanEventRow's column order.
-- locked_by reads empty for the CDC relay's marks (retry, parked): it names a lease holder.
SELECT seq, id, type, topic, key, payload, headers, status, attempts, coalesce(last_error, ''),
    created_at, next_attempt_at, delivered_at, coalesce(nullif(nullif(locked_by, 'retry'), 'parked'), ''), locked_until
FROM {{.Table}} WHERE id = $1
