-- claim: rendered once per table by newQueries (placeholders: see there).
UPDATE {T} SET locked_by = ?1, locked_until = {NOW} + ?2 * 1000
WHERE seq IN (
	SELECT o.seq FROM {T} o
	WHERE o.status = 'pending'
	  AND o.next_attempt_at <= {NOW}
	  AND (o.locked_until IS NULL OR o.locked_until < {NOW})
	  AND (o.key = '' OR NOT EXISTS (
		SELECT 1 FROM {T} p
		WHERE p.status = 'pending' AND (p.locked_by IS NOT NULL OR p.attempts > 0)
		  AND p.key = o.key AND p.seq < o.seq
		  AND (p.next_attempt_at > {NOW} OR p.locked_until >= {NOW})))
	ORDER BY o.seq
	LIMIT ?3)
RETURNING seq, id, type, topic, key, payload, headers, attempts, created_at, next_attempt_at, locked_until
