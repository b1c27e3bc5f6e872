-- The ack rows of the events {IDS}.
SELECT event_id, status, reason, deadline_ms, resend_backoff_ms, max_resends, resends,
    created_at, answered_at, resent_at
FROM {{.AckTable}} WHERE event_id IN ({IDS})
