-- Records the delivery of the held batch's events $1 (comma-separated
-- seqs). With Config.DeleteDelivered the row is deleted instead: no new row
-- version, no index entry. A delivered event keeps no last_error of an
-- earlier failed attempt.
{{if .DeleteDelivered -}}
DELETE FROM {{.Table}}
{{- else -}}
UPDATE {{.Table}} SET status = 'delivered', delivered_at = statement_timestamp(),
    attempts = attempts + 1, last_error = NULL
{{- end}}
WHERE seq = ANY(string_to_array($1, ',')::bigint[])
