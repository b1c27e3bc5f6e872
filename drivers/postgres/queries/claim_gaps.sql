-- A key's advisory lock can be released by another relay's commit while the
-- claim scan runs, so the scan may skip a key's row (lock busy) and take
-- later ones (lock free again). Once the key's lock is ours, this check (a
-- fresh snapshot) counts the key's pending rows up to the last claimed one:
-- more than we claimed means a gap, and the batch then leaves that key
-- alone. $1 is a JSON array of {key, seq (the last claimed), n (how many)}.
SELECT k.key FROM json_to_recordset($1::json) AS k(key text, seq bigint, n bigint)
WHERE (SELECT count(*) FROM {{.Table}} p
       WHERE p.status = 'pending' AND p.key = k.key AND p.seq <= k.seq) <> k.n
