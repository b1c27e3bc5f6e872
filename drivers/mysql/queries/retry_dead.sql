-- Makes every dead event pending again with a fresh attempt budget; the two
-- parameters are a type, or '' for any. The scan reads claim_idx from
-- status 'dead' on; the type is a filter on those rows.
UPDATE {{.Table}} SET status = 'pending', attempts = 0, next_attempt_at = UTC_TIMESTAMP(6)
WHERE status = 'dead' AND (? = '' OR type = ?)
