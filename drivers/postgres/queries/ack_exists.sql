-- Whether event $1 has an ack row (after an answer changed nothing).
SELECT count(*) FROM {{.AckTable}} WHERE event_id = $1::uuid
