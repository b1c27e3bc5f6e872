-- CDC relay: records the delivery of the streamed events $1
-- (comma-separated ids) in one statement and returns the ids it recorded;
-- with Config.DeleteDelivered the rows are deleted instead, except an event
-- still awaiting a business acknowledgment, which is kept (marked
-- delivered) so that it can be resent. Clears a retry's mark.
{{if .DeleteDelivered -}}
WITH kept AS (
    UPDATE {{.Table}} SET status = 'delivered', delivered_at = statement_timestamp(),
        attempts = attempts + 1, last_error = NULL, locked_by = NULL
    WHERE id = ANY(string_to_array($1, ',')::uuid[]) AND status = 'pending'
      AND EXISTS (SELECT 1 FROM {{.AckTable}} a WHERE a.event_id = id AND a.status = 'awaiting')
    RETURNING id
), deleted AS (
    DELETE FROM {{.Table}} e
    WHERE e.id = ANY(string_to_array($1, ',')::uuid[]) AND e.status = 'pending'
      AND NOT EXISTS (SELECT 1 FROM {{.AckTable}} a WHERE a.event_id = e.id AND a.status = 'awaiting')
    RETURNING e.id
)
SELECT id::text FROM kept UNION ALL SELECT id::text FROM deleted
{{- else -}}
UPDATE {{.Table}} SET status = 'delivered', delivered_at = statement_timestamp(),
    attempts = attempts + 1, last_error = NULL, locked_by = NULL
WHERE id = ANY(string_to_array($1, ',')::uuid[]) AND status = 'pending'
RETURNING id::text
{{- end}}
