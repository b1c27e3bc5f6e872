-- Makes the events $1 (comma-separated ids) pending again with a fresh
-- attempt budget, whatever their status. An event in an open held claim is
-- updated once that claim ends.
UPDATE {{.Table}} SET status = 'pending', attempts = 0, next_attempt_at = statement_timestamp()
WHERE id = ANY(string_to_array($1, ',')::uuid[])
