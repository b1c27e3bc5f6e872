-- mark_failed: rendered once per table by newQueries (placeholders: see there).
UPDATE {T} AS t SET attempts = t.attempts + 1, last_error = f.err,
	status = CASE WHEN f.dead THEN 'dead' ELSE 'pending' END,
	next_attempt_at = CASE WHEN f.dead THEN t.next_attempt_at ELSE {NOW} + f.delay_us END,
	locked_by = NULL, locked_until = NULL
FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.err') AS err,
		json_extract(value, '$.delay_us') AS delay_us, json_extract(value, '$.dead') AS dead
	FROM json_each(?1)) AS f
WHERE t.id = f.id AND t.locked_by = ?2 AND t.status = 'pending'
