-- list: rendered once per table by newQueries (placeholders: see there).
SELECT {COLUMNS} FROM {T}
WHERE seq > ?1
  AND (?2 = '' OR status = ?2)
  AND (?3 = '' OR type = ?3)
  AND (?4 = '' OR key = ?4)
  AND (?5 IS NULL OR created_at >= ?5)
  AND (?6 IS NULL OR created_at < ?6)
  AND (?8 = '' OR topic = ?8)
  AND (?9 = '' OR last_error = ?9)
ORDER BY seq LIMIT ?7
