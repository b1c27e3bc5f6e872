-- Ids of the events whose ack is in a state, after a seq, in seq order, at most a limit.
SELECT e.id FROM {{.AckTable}} a JOIN {{.Table}} e ON e.id = a.event_id
WHERE a.status = ? AND e.seq > ?
ORDER BY e.seq LIMIT ?
