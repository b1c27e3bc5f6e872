-- Deletes at most a limit of ack rows whose event is gone (purged).
DELETE FROM {{.AckTable}} WHERE event_id IN (
    SELECT event_id FROM (
        SELECT a.event_id FROM {{.AckTable}} a LEFT JOIN {{.Table}} e ON e.id = a.event_id
        WHERE e.id IS NULL LIMIT ?) AS gone)
