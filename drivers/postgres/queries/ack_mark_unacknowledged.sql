-- Gives up on event $1's ack if it is still awaiting with $2 resends.
UPDATE {{.AckTable}} SET status = 'unacknowledged'
WHERE event_id = $1::uuid AND status = 'awaiting' AND resends = $2
