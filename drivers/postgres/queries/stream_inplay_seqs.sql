-- CDC relay, at the start of a stream: the seqs of the events
-- stream_inplay.sql returns (same condition, same snapshot), in order. The
-- stream keeps only these in memory, to drop what its log replays of them.
SELECT seq FROM {{.Table}}
WHERE status = 'pending' AND ($1 OR attempts > 0 OR locked_by IS NOT NULL)
ORDER BY seq
