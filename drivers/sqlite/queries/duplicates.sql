-- duplicates: rendered once per table by newQueries (placeholders: see there).
SELECT id, type, topic, key, payload FROM {T} WHERE id IN {IDS}
