-- Whether an event has an ack row (after an answer changed nothing).
SELECT COUNT(*) FROM {{.AckTable}} WHERE event_id = ?
