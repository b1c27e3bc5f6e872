-- Locks the candidates' rows ({IDS}: their seqs); one locked by a
-- transaction that does not take our named locks (an operator's, a
-- committing writer's) is skipped, and the gap check drops its key.
SELECT seq, id, type, topic, event_key, payload, headers, attempts, created_at
FROM {{.Table}} WHERE seq IN ({IDS}) AND status = 'pending'
FOR UPDATE SKIP LOCKED
