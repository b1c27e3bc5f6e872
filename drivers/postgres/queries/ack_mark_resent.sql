-- Counts one resend of event $1's ack if it is still awaiting with $2
-- resends: of several relays sweeping at once, one wins.
UPDATE {{.AckTable}} SET resends = resends + 1, resent_at = statement_timestamp()
WHERE event_id = $1::uuid AND status = 'awaiting' AND resends = $2
