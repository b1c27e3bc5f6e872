-- claimable: the condition, on row o, of an event a claim may take: pending,
-- due, not leased, and no earlier event of its key leased or in backoff.
-- Rendered into candidates.sql and claim.sql as {CLAIMABLE}.
o.status = 'pending'
	  AND o.next_attempt_at <= {NOW}
	  AND (o.locked_until IS NULL OR o.locked_until < {NOW})
	  AND (o.key = '' OR NOT EXISTS (
		SELECT 1 FROM {T} p
		WHERE p.status = 'pending' AND (p.locked_by IS NOT NULL OR p.attempts > 0)
		  AND p.key = o.key AND p.seq < o.seq
		  AND (p.next_attempt_at > {NOW} OR p.locked_until >= {NOW})))
