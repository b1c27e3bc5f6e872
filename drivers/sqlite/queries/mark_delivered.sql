-- mark_delivered: rendered once per table by newQueries (placeholders: see there).
UPDATE {T} SET status = 'delivered', delivered_at = {NOW},
	attempts = attempts + 1, last_error = NULL, locked_by = NULL, locked_until = NULL
WHERE id IN {IDS} AND locked_by = ?2 AND status = 'pending'
