-- Deletes at most $1 ack rows whose event is gone (purged, or deleted on
-- delivery with DeleteDelivered after its answer).
DELETE FROM {{.AckTable}} WHERE event_id IN (
    SELECT a.event_id FROM {{.AckTable}} a
    WHERE NOT EXISTS (SELECT 1 FROM {{.Table}} e WHERE e.id = a.event_id)
    LIMIT $1)
