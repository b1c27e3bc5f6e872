-- Records the delivery of the held batch's events $1 (comma-separated
-- seqs). With Config.DeleteDelivered the row is deleted instead: no new row
-- version, no index entry; but an event still awaiting a business
-- acknowledgment is kept (marked delivered), so that it can be resent. A
-- delivered event keeps no last_error of an earlier failed attempt. The
-- seqs are joined from unnest(...) rather than matched with = ANY(...):
-- lib/pq plans every execution for its parameter, and planning = ANY over
-- a constant array of 500 values took 3-4 ms, a third of the statement.
{{if .DeleteDelivered -}}
WITH kept AS (
    UPDATE {{.Table}} e SET status = 'delivered', delivered_at = statement_timestamp(),
        attempts = e.attempts + 1, last_error = NULL
    FROM unnest(string_to_array($1, ',')::bigint[]) AS d(seq)
    WHERE e.seq = d.seq
      AND EXISTS (SELECT 1 FROM {{.AckTable}} a WHERE a.event_id = e.id AND a.status = 'awaiting')
)
DELETE FROM {{.Table}} e
USING unnest(string_to_array($1, ',')::bigint[]) AS d(seq)
WHERE e.seq = d.seq
  AND NOT EXISTS (SELECT 1 FROM {{.AckTable}} a WHERE a.event_id = e.id AND a.status = 'awaiting')
{{- else -}}
UPDATE {{.Table}} e SET status = 'delivered', delivered_at = statement_timestamp(),
    attempts = e.attempts + 1, last_error = NULL
FROM unnest(string_to_array($1, ',')::bigint[]) AS d(seq)
WHERE e.seq = d.seq
{{- end}}
