-- claim: rendered once per table by newQueries (placeholders: see there).
-- Runs under the write lock on the candidates ?4 (a JSON array of seqs from
-- candidates.sql): the same condition, checked again on the latest state,
-- over a few rows only, so the lock is held for a bounded statement.
UPDATE {T} SET locked_by = ?1, locked_until = {NOW} + ?2 * 1000
WHERE seq IN (
	SELECT o.seq FROM {T} o
	WHERE o.seq IN (SELECT value FROM json_each(?4))
	  AND {CLAIMABLE}
	ORDER BY o.seq
	LIMIT ?3)
RETURNING seq, id, type, topic, key, payload, headers, attempts, created_at, next_attempt_at, locked_until
