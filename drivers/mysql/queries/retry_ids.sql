-- Makes the events {IDS} (canonical ids) pending again with a fresh attempt
-- budget, whatever their status. With the first parameter true (a resend
-- the receiver must get, outboxdriver.EventRetryParams.Resend) the header
-- outbox_resend counts it: 1, then 2, ...; a stored value that is not a
-- small decimal counts as 0, headers that are not an object stay as they
-- are.
UPDATE {{.Table}} SET status = 'pending', attempts = 0, next_attempt_at = UTC_TIMESTAMP(6),
    headers = IF(? AND JSON_TYPE(headers) = 'OBJECT',
        JSON_SET(headers, '$.outbox_resend', CAST(1 + IF(
            COALESCE(JSON_UNQUOTE(JSON_EXTRACT(headers, '$.outbox_resend')), '') REGEXP '^[0-9]{1,9}$',
            CAST(JSON_UNQUOTE(JSON_EXTRACT(headers, '$.outbox_resend')) AS UNSIGNED), 0) AS CHAR)),
        headers)
WHERE id IN ({IDS})
