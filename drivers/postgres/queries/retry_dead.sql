-- Makes every dead event (of type $1, or of any type when $1 is empty)
-- pending again with a fresh attempt budget.
UPDATE {{.Table}} SET status = 'pending', attempts = 0, next_attempt_at = statement_timestamp()
WHERE status = 'dead' AND ($1 = '' OR type = $1)
