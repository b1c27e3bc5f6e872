-- ack_purge: deletes at most ?1 ack rows whose event is gone (purged).
DELETE FROM {A} WHERE event_id IN (
	SELECT a.event_id FROM {A} a WHERE NOT EXISTS (SELECT 1 FROM {T} e WHERE e.id = a.event_id) LIMIT ?1)
