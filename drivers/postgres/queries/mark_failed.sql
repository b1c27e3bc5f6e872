-- Records failed attempts of the held batch's events: $1 is a JSON array of
-- {seq, err, delay_ms, dead}. A dead event keeps its next_attempt_at.
UPDATE {{.Table}} t SET attempts = t.attempts + 1, last_error = f.err,
    status = CASE WHEN f.dead THEN 'dead' ELSE 'pending' END,
    next_attempt_at = CASE WHEN f.dead THEN t.next_attempt_at
        ELSE statement_timestamp() + f.delay_ms * interval '1 millisecond' END
FROM json_to_recordset($1::json) AS f(seq bigint, err text, delay_ms bigint, dead boolean)
WHERE t.seq = f.seq
