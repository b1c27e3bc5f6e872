-- ack_exists: whether event ?1 has an ack row.
SELECT count(*) FROM {A} WHERE event_id = ?1
