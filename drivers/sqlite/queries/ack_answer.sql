-- ack_answer: the receiver's answer ?2 (acknowledged or rejected) with
-- reason ?3 for event ?1, in the caller's transaction, unless answered already.
UPDATE {A} SET status = ?2, reason = ?3, answered_at = {NOW}
WHERE event_id = ?1 AND status IN ('awaiting', 'unacknowledged')
