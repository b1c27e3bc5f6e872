-- Records the receiver's answer (acknowledged or rejected) and reason for
-- an event, in the caller's transaction, unless it was answered already.
UPDATE {{.AckTable}} SET status = ?, reason = ?, answered_at = UTC_TIMESTAMP(6)
WHERE event_id = ? AND status IN ('awaiting', 'unacknowledged')
