-- Records one failed attempt of a held batch's event. Parameters: the
-- error, dead, the retry delay in microseconds, dead, the seq. MySQL
-- evaluates SET assignments left to right with the new values, so
-- next_attempt_at (which reads only itself) comes before status.
UPDATE {{.Table}} SET attempts = attempts + 1, last_error = ?,
    next_attempt_at = IF(?, next_attempt_at, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND),
    status = IF(?, 'dead', 'pending')
WHERE seq = ?
