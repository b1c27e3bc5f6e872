-- ack_list: ids of the events whose ack is in state ?1, after seq ?2, in seq order, at most ?3.
SELECT e.id FROM {A} a JOIN {T} e ON e.id = a.event_id
WHERE a.status = ?1 AND e.seq > ?2
ORDER BY e.seq LIMIT ?3
