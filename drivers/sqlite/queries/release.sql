-- release: rendered once per table by newQueries (placeholders: see there).
UPDATE {T} SET locked_by = NULL, locked_until = NULL
WHERE id IN {IDS} AND locked_by = ?2 AND status = 'pending'
