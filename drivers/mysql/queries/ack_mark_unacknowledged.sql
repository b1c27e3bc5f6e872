-- Gives up on an event's ack if it is still awaiting with the given resends.
UPDATE {{.AckTable}} SET status = 'unacknowledged'
WHERE event_id = ? AND status = 'awaiting' AND resends = ?
