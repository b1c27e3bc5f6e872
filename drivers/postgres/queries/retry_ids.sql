-- Makes the events $1 (comma-separated ids) pending again with a fresh
-- attempt budget, whatever their status. An event in an open held claim is
-- updated once that claim ends. locked_by = 'retry' tells a CDC relay
-- (which sees the update in its stream) that the event is to be sent
-- again; polling relays do not read it. With $2 true (a resend the
-- receiver must get, outboxdriver.EventRetryParams.Resend) the header
-- outbox_resend counts it: 1, then 2, ...; a stored value that is not a
-- small decimal counts as 0, headers that are not an object stay as they
-- are.
UPDATE {{.Table}} SET status = 'pending', attempts = 0, next_attempt_at = statement_timestamp(), locked_by = 'retry',
    headers = CASE WHEN $2 AND jsonb_typeof(headers) = 'object'
        THEN headers || jsonb_build_object('outbox_resend', (1 + CASE WHEN headers->>'outbox_resend' ~ '^[0-9]{1,9}$'
            THEN (headers->>'outbox_resend')::integer ELSE 0 END)::text)
        ELSE headers END
WHERE id = ANY(string_to_array($1, ',')::uuid[])
