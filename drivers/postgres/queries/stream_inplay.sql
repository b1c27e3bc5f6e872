-- CDC relay, at the start of a stream: the pending events the table holds
-- for it (failed and waiting for a retry, held behind one, or marked for a
-- retry), in ScanEventRow's column order and Seq order. With $1 true,
-- every pending event (a new slot: the events committed before it exist
-- only in the table). Read through a cursor, a batch at a time; keep its
-- condition that of stream_inplay_seqs.sql.
SELECT seq, id, type, topic, key, payload, headers, status, attempts, coalesce(last_error, ''),
    created_at, next_attempt_at, delivered_at, coalesce(locked_by, ''), locked_until
FROM {{.Table}}
WHERE status = 'pending' AND ($1 OR attempts > 0 OR locked_by IS NOT NULL)
ORDER BY seq
