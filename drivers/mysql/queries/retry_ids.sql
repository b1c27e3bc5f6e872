-- Makes the events {IDS} (canonical ids) pending again with a fresh attempt
-- budget, whatever their status.
UPDATE {{.Table}} SET status = 'pending', attempts = 0, next_attempt_at = UTC_TIMESTAMP(6)
WHERE id IN ({IDS})
