-- Counts one resend of an event's ack if it is still awaiting with the
-- given resends: of several relays sweeping at once, one wins.
UPDATE {{.AckTable}} SET resends = resends + 1, resent_at = UTC_TIMESTAMP(6)
WHERE event_id = ? AND status = 'awaiting' AND resends = ?
