-- The held claim: up to $1 ready events from seq $2 on (the FromSeq hint; 0
-- scans from the start), in seq order, each row locked (FOR UPDATE SKIP
-- LOCKED) and each key locked with a transaction-scoped advisory lock in the
-- table's key space ({{.KeySpace}}), until the transaction ends.
--
-- The scan tries a row's key lock before locking the row, so a concurrent
-- claim (another relay, or this relay's next batch while one is being
-- published) steps over the keys another claim holds, without locking their
-- rows, and takes the next free ones. The CASE fixes the order: the lock is
-- tried only on a row that is otherwise ready. The lock function runs on
-- each row the scan visits, so the scan must be the ordered scan of the
-- pending index that stops at the limit (see claim_session.sql).
--
-- When $3 (ScanLimit) is positive, the scan stops at the $3-th pending row
-- from $2 (the InitPlan reads that many entries of the pending index and
-- takes no lock); when it is 0, the LIMIT 0 yields no row and COALESCE
-- leaves the scan unbounded.
--
-- The EXISTS keeps a key's rows behind an earlier event of the key in
-- backoff (a failed attempt waiting for its retry time); it reads the
-- partial "inplay" index, whose predicate (attempts > 0 OR locked_by IS NOT
-- NULL, from schema version 1) this condition implies.
SELECT o.seq, o.id, o.type, o.topic, o.key, o.payload, o.headers, o.attempts, o.created_at
FROM {{.Table}} o
WHERE o.status = 'pending' AND o.seq >= $2
  AND o.seq <= COALESCE((
      SELECT w.seq FROM {{.Table}} w
      WHERE w.status = 'pending' AND w.seq >= $2
      ORDER BY w.seq OFFSET greatest($3::int - 1, 0)
      LIMIT CASE WHEN $3::int > 0 THEN 1 ELSE 0 END), 9223372036854775807)
  AND o.next_attempt_at <= statement_timestamp()
  AND CASE WHEN o.key = '' THEN true
      WHEN EXISTS (
          SELECT 1 FROM {{.Table}} p
          WHERE p.status = 'pending' AND p.attempts > 0
            AND p.key = o.key AND p.seq < o.seq
            AND p.next_attempt_at > statement_timestamp()) THEN false
      ELSE pg_try_advisory_xact_lock({{.KeySpace}}, hashtext(o.key)) END
ORDER BY o.seq
LIMIT $1
FOR UPDATE OF o SKIP LOCKED
