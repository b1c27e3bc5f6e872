-- purge: rendered once per table by newQueries (placeholders: see there).
-- An event whose business acknowledgment is awaiting or unacknowledged is
-- not done: it is kept.
DELETE FROM {T} WHERE seq IN (
	SELECT seq FROM {T} e WHERE e.status = 'delivered' AND e.delivered_at < ?1
	  AND NOT EXISTS (SELECT 1 FROM {A} a WHERE a.event_id = e.id AND a.status IN ('awaiting', 'unacknowledged'))
	ORDER BY e.delivered_at LIMIT ?2)
