-- extend: rendered once per table by newQueries (placeholders: see there).
UPDATE {T} SET locked_until = {NOW} + ?3 * 1000
WHERE id IN {IDS} AND locked_by = ?2 AND status = 'pending'
