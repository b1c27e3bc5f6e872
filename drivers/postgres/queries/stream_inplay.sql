-- CDC relay, at the start of a stream: the pending events the table holds
-- for it (failed and waiting for a retry, held behind one, or marked for a
-- retry), in ScanEventRow's column order and Seq order. With $1 true (a
-- new slot), also every other pending event up to seq $2 (NULL: every
-- one): those may have committed before the slot and exist only in the
-- table; the later ones were inserted after the slot existed and its
-- stream carries them (CDC.setBacklogSeq). Read through a cursor, a batch
-- at a time; keep its condition that of stream_inplay_seqs.sql.
SELECT seq, id, type, topic, key, payload, headers, status, attempts, coalesce(last_error, ''),
    created_at, next_attempt_at, delivered_at, coalesce(locked_by, ''), locked_until
FROM {{.Table}}
WHERE status = 'pending'
  AND (($1 AND seq <= coalesce($2::bigint, 9223372036854775807)) OR attempts > 0 OR locked_by IS NOT NULL)
ORDER BY seq
