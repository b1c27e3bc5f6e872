-- Makes the unacknowledged acks of events $1 (comma-separated ids) awaiting
-- again, with no resend counted (an operator's retry).
UPDATE {{.AckTable}} SET status = 'awaiting', resends = 0, resent_at = NULL
WHERE event_id = ANY(string_to_array($1, ',')::uuid[]) AND status = 'unacknowledged'
