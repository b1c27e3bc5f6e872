-- Records the delivery of the held batch's events $1 (comma-separated
-- seqs). With Config.DeleteDelivered the row is deleted instead: no new row
-- version, no index entry; but an event still awaiting a business
-- acknowledgment is kept (marked delivered), so that it can be resent. A
-- delivered event keeps no last_error of an earlier failed attempt.
{{if .DeleteDelivered -}}
WITH kept AS (
    UPDATE {{.Table}} SET status = 'delivered', delivered_at = statement_timestamp(),
        attempts = attempts + 1, last_error = NULL
    WHERE seq = ANY(string_to_array($1, ',')::bigint[])
      AND EXISTS (SELECT 1 FROM {{.AckTable}} a WHERE a.event_id = id AND a.status = 'awaiting')
)
DELETE FROM {{.Table}} e
WHERE e.seq = ANY(string_to_array($1, ',')::bigint[])
  AND NOT EXISTS (SELECT 1 FROM {{.AckTable}} a WHERE a.event_id = e.id AND a.status = 'awaiting')
{{- else -}}
UPDATE {{.Table}} SET status = 'delivered', delivered_at = statement_timestamp(),
    attempts = attempts + 1, last_error = NULL
WHERE seq = ANY(string_to_array($1, ',')::bigint[])
{{- end}}
