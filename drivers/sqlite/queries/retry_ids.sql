-- retry_ids: rendered once per table by newQueries (placeholders: see there).
-- With ?2 true (a resend the receiver must get,
-- outboxdriver.EventRetryParams.Resend) the header outbox_resend counts it:
-- 1, then 2, ...; a stored value that is not a small decimal counts as 0,
-- headers that are not a JSON object stay as they are.
UPDATE {T} SET status = 'pending', attempts = 0, next_attempt_at = {NOW},
	locked_by = NULL, locked_until = NULL,
	headers = CASE WHEN ?2 AND json_valid(headers) AND json_type(headers) = 'object'
		THEN json_set(headers, '$.outbox_resend', CAST(1 + CASE
			WHEN json_type(headers, '$.outbox_resend') = 'text'
			 AND length(json_extract(headers, '$.outbox_resend')) BETWEEN 1 AND 9
			 AND json_extract(headers, '$.outbox_resend') NOT GLOB '*[^0-9]*'
			THEN CAST(json_extract(headers, '$.outbox_resend') AS INTEGER) ELSE 0 END AS TEXT))
		ELSE headers END
WHERE id IN {IDS}
  AND (status <> 'pending' OR locked_until IS NULL OR locked_until < {NOW})
