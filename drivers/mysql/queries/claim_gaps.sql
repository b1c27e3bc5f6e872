-- The pending events of the claimed keys ({IDS}) up to the last claimed seq
-- (the last parameter), for the gap check (dropKeysWithGaps).
SELECT event_key, seq FROM {{.Table}} FORCE INDEX (pending_key_idx)
WHERE status = 'pending' AND event_key IN ({IDS}) AND seq <= ?
