-- CDC relay: records failed attempts of streamed events: $1 is a JSON array
-- of {id, err, delay_ms, dead}, as mark_failed.sql by seq. Clears a retry's
-- or a hold's mark: attempts > 0 keeps a pending event in the set the next
-- stream reads from the table (stream_inplay.sql).
UPDATE {{.Table}} t SET attempts = t.attempts + 1, last_error = f.err, locked_by = NULL,
    status = CASE WHEN f.dead THEN 'dead' ELSE 'pending' END,
    next_attempt_at = CASE WHEN f.dead THEN t.next_attempt_at
        ELSE statement_timestamp() + f.delay_ms * interval '1 millisecond' END
FROM json_to_recordset($1::json) AS f(id uuid, err text, delay_ms bigint, dead boolean)
WHERE t.id = f.id AND t.status = 'pending'
RETURNING t.id::text
