-- ack_get: the ack rows of the events {IDS}.
SELECT {ACKCOLUMNS} FROM {A} a WHERE a.event_id IN {IDS}
