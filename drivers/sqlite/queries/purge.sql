-- purge: rendered once per table by newQueries (placeholders: see there).
DELETE FROM {T} WHERE seq IN (
	SELECT seq FROM {T} WHERE status = 'delivered' AND delivered_at < ?1 ORDER BY delivered_at LIMIT ?2)
