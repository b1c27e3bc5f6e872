-- list: rendered once per table by newQueries (placeholders: see there).
SELECT {COLUMNS} FROM {T}
WHERE seq > ?1
  AND (?2 = '' OR status = ?2)
  AND (?3 = '' OR type = ?3)
  AND (?4 = '' OR key = ?4)
  AND (?5 IS NULL OR created_at >= ?5)
  AND (?6 IS NULL OR created_at < ?6)
ORDER BY seq LIMIT ?7
