-- Makes the events $1 (comma-separated ids) pending again with a fresh
-- attempt budget, whatever their status. An event in an open held claim is
-- updated once that claim ends. locked_by = 'retry' tells a CDC relay
-- (which sees the update in its stream) that the event is to be sent
-- again; polling relays do not read it.
UPDATE {{.Table}} SET status = 'pending', attempts = 0, next_attempt_at = statement_timestamp(), locked_by = 'retry'
WHERE id = ANY(string_to_array($1, ',')::uuid[])
