-- ready: rendered once per table by newQueries (placeholders: see there).
SELECT EXISTS (SELECT 1 FROM {T} o
WHERE o.status = 'pending' AND o.next_attempt_at <= {NOW}
  AND (o.locked_until IS NULL OR o.locked_until < {NOW}))
