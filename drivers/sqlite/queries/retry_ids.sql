-- retry_ids: rendered once per table by newQueries (placeholders: see there).
UPDATE {T} SET status = 'pending', attempts = 0, next_attempt_at = {NOW},
	locked_by = NULL, locked_until = NULL
WHERE id IN {IDS}
  AND (status <> 'pending' OR locked_until IS NULL OR locked_until < {NOW})
