-- ack_due: at most ?1 awaiting acks whose event is delivered and whose
-- answer is overdue: the event's last delivery (or the last resend
-- decision, if a relay decided one and has not made the event pending yet,
-- or crashed before) plus the deadline (before any resend) or the resend
-- backoff (after one) is past.
SELECT {ACKCOLUMNS} FROM {A} a JOIN {T} e ON e.id = a.event_id
WHERE a.status = 'awaiting' AND e.status = 'delivered'
  AND max(e.delivered_at, coalesce(a.resent_at, e.delivered_at))
      + (CASE WHEN a.resends = 0 THEN a.deadline_ms ELSE a.resend_backoff_ms END) * 1000 <= {NOW}
ORDER BY a.created_at LIMIT ?1
