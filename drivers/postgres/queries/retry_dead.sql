-- Makes every dead event (of type $1, or of any type when $1 is empty)
-- pending again with a fresh attempt budget; locked_by = 'retry' as in
-- retry_ids.sql.
UPDATE {{.Table}} SET status = 'pending', attempts = 0, next_attempt_at = statement_timestamp(), locked_by = 'retry'
WHERE status = 'dead' AND ($1 = '' OR type = $1)
