-- stats: rendered once per table by newQueries (placeholders: see there).
SELECT
	(SELECT count(*) FROM {T} WHERE status = 'pending'),
	(SELECT count(*) FROM {T} WHERE status = 'dead'),
	(SELECT created_at FROM {T} WHERE status = 'pending' ORDER BY seq LIMIT 1),
	(SELECT count(*) FROM {T} WHERE status = 'delivered' AND delivered_at > {NOW} - 60000000),
	{NOW}
