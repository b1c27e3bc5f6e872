-- The ack rows of events $1 (comma-separated ids).
SELECT event_id::text, status, reason, deadline_ms, resend_backoff_ms, max_resends, resends,
    created_at, answered_at, resent_at
FROM {{.AckTable}} WHERE event_id = ANY(string_to_array($1, ',')::uuid[])
