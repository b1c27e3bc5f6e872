-- ack_mark_unacknowledged: gives up on event ?1's ack if it is still awaiting with ?2 resends.
UPDATE {A} SET status = 'unacknowledged'
WHERE event_id = ?1 AND status = 'awaiting' AND resends = ?2
