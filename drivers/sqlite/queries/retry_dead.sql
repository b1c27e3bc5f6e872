-- retry_dead: rendered once per table by newQueries (placeholders: see there).
UPDATE {T} SET status = 'pending', attempts = 0, next_attempt_at = {NOW},
	locked_by = NULL, locked_until = NULL
WHERE status = 'dead' AND (?1 = '' OR type = ?1)
