-- CDC relay: records the delivery of the streamed events $1
-- (comma-separated ids) in one statement and returns the ids it recorded;
-- with Config.DeleteDelivered the rows are deleted instead, except an event
-- still awaiting a business acknowledgment, which is kept (marked
-- delivered) so that it can be resent. Clears a retry's mark. The ids are
-- joined from unnest(...), as in mark_delivered.sql.
{{if .DeleteDelivered -}}
WITH kept AS (
    UPDATE {{.Table}} e SET status = 'delivered', delivered_at = statement_timestamp(),
        attempts = e.attempts + 1, last_error = NULL, locked_by = NULL
    FROM unnest(string_to_array($1, ',')::uuid[]) AS d(id)
    WHERE e.id = d.id AND e.status = 'pending'
      AND EXISTS (SELECT 1 FROM {{.AckTable}} a WHERE a.event_id = e.id AND a.status = 'awaiting')
    RETURNING e.id
), deleted AS (
    DELETE FROM {{.Table}} e
    USING unnest(string_to_array($1, ',')::uuid[]) AS d(id)
    WHERE e.id = d.id AND e.status = 'pending'
      AND NOT EXISTS (SELECT 1 FROM {{.AckTable}} a WHERE a.event_id = e.id AND a.status = 'awaiting')
    RETURNING e.id
)
SELECT id::text FROM kept UNION ALL SELECT id::text FROM deleted
{{- else -}}
UPDATE {{.Table}} e SET status = 'delivered', delivered_at = statement_timestamp(),
    attempts = e.attempts + 1, last_error = NULL, locked_by = NULL
FROM unnest(string_to_array($1, ',')::uuid[]) AS d(id)
WHERE e.id = d.id AND e.status = 'pending'
RETURNING e.id::text
{{- end}}
