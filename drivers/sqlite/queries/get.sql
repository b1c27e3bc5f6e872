-- get: rendered once per table by newQueries (placeholders: see there).
SELECT {COLUMNS} FROM {T} WHERE id = ?1
