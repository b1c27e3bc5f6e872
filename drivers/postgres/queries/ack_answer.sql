-- Records the receiver's answer $2 (acknowledged or rejected) with reason $3
-- for event $1, in the caller's transaction, unless it was answered already.
UPDATE {{.AckTable}} SET status = $2, reason = $3, answered_at = statement_timestamp()
WHERE event_id = $1::uuid AND status IN ('awaiting', 'unacknowledged')
