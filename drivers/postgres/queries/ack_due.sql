-- At most $1 awaiting acks whose event is delivered and whose answer is
-- overdue: the event's last delivery (or the last resend decision, if a
-- relay decided one and has not made the event pending yet, or crashed
-- before) plus the deadline (before any resend) or the resend backoff
-- (after one) is past.
SELECT a.event_id::text, a.status, a.reason, a.deadline_ms, a.resend_backoff_ms, a.max_resends, a.resends,
    a.created_at, a.answered_at, a.resent_at
FROM {{.AckTable}} a JOIN {{.Table}} e ON e.id = a.event_id
WHERE a.status = 'awaiting' AND e.status = 'delivered'
  AND GREATEST(e.delivered_at, a.resent_at)
      + (CASE WHEN a.resends = 0 THEN a.deadline_ms ELSE a.resend_backoff_ms END) * interval '1 millisecond'
      <= statement_timestamp()
ORDER BY a.created_at LIMIT $1
