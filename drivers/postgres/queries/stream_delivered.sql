-- CDC relay: records the delivery of the streamed events $1
-- (comma-separated ids) in one statement; with Config.DeleteDelivered the
-- rows are deleted instead. Clears a retry's mark.
{{if .DeleteDelivered -}}
DELETE FROM {{.Table}}
{{- else -}}
UPDATE {{.Table}} SET status = 'delivered', delivered_at = statement_timestamp(),
    attempts = attempts + 1, last_error = NULL, locked_by = NULL
{{- end}}
WHERE id = ANY(string_to_array($1, ',')::uuid[]) AND status = 'pending'
RETURNING id::text
