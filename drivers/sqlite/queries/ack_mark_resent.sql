-- ack_mark_resent: counts one resend of event ?1's ack if it is still
-- awaiting with ?2 resends: of several relays sweeping at once, one wins.
UPDATE {A} SET resends = resends + 1, resent_at = {NOW}
WHERE event_id = ?1 AND status = 'awaiting' AND resends = ?2
