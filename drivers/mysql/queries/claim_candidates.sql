-- The held claim's scan: a plain read (no row locks) that takes, for each
-- ready row in seq order, a named lock (GET_LOCK, held by the session until
-- the batch ends): the key's, or the row's own for an event without a key.
-- A row whose lock another claim holds fails the WHERE clause, so a
-- concurrent claim steps over the keys and rows another claim holds and
-- takes the next free ones, up to the limit. The WHERE clause runs left to
-- right, so the lock is tried only on a row that is otherwise ready, and the
-- scan is the ordered scan of claim_idx that stops at the limit
-- (TestHeldClaimPlan: no filesort, which would try the lock of every pending
-- row). A locking read would not do: InnoDB keeps the lock of a row it read
-- FOR UPDATE even when the WHERE clause then rejects it.
--
-- The NOT EXISTS keeps a key's rows behind an earlier event of the key in
-- backoff (a failed attempt waiting for its retry time), read from held_idx
-- (held_key is the key of a pending event that was attempted).
--
-- With EventClaimBatchParams.ScanLimit, the scan stops at the ScanLimit-th
-- pending row from FromSeq (the subquery reads that many entries of
-- claim_idx, once, and takes no lock); without it, its LIMIT x, 0 yields no
-- row and COALESCE leaves the scan unbounded.
--
-- Parameters: EventClaimBatchParams.FromSeq; for the bound FromSeq again,
-- max(ScanLimit-1, 0) and 1 (bounded) or 0 (not); the table's lock-name
-- prefix; the limit. Time is the database's (UTC_TIMESTAMP(6)), never the
-- application's clock.
SELECT o.seq FROM {{.Table}} o FORCE INDEX (claim_idx)
WHERE o.status = 'pending' AND o.seq >= ?
  AND o.seq <= COALESCE((
      SELECT w.seq FROM {{.Table}} w FORCE INDEX (claim_idx)
      WHERE w.status = 'pending' AND w.seq >= ?
      ORDER BY w.seq LIMIT ?, ?), 9223372036854775807)
  AND o.next_attempt_at <= UTC_TIMESTAMP(6)
  AND (o.event_key = '' OR NOT EXISTS (
      SELECT 1 FROM {{.Table}} p
      WHERE p.held_key = o.event_key AND p.seq < o.seq
        AND p.next_attempt_at > UTC_TIMESTAMP(6)))
  AND GET_LOCK(CONCAT(?, IF(o.event_key = '', CONCAT('#', o.seq), MD5(o.event_key))), 0) = 1
ORDER BY o.seq
LIMIT ?
