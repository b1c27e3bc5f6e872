-- Makes the unacknowledged acks of the events {IDS} awaiting again, with no
-- resend counted (an operator's retry).
UPDATE {{.AckTable}} SET status = 'awaiting', resends = 0, resent_at = NULL
WHERE event_id IN ({IDS}) AND status = 'unacknowledged'
