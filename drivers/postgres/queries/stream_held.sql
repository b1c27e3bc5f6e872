-- CDC relay: marks the pending events $1 (comma-separated ids) that wait
-- behind a failed event of their key, so that the relay may confirm its
-- stream past them: the next stream reads them from the table.
UPDATE {{.Table}} SET locked_by = 'parked'
WHERE id = ANY(string_to_array($1, ',')::uuid[]) AND status = 'pending'
RETURNING id::text
