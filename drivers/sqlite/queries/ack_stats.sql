-- ack_stats: awaiting, rejected, unacknowledged, the oldest awaiting
-- created_at (NULL when none) and the database's now.
SELECT
	(SELECT count(*) FROM {A} WHERE status = 'awaiting'),
	(SELECT count(*) FROM {A} WHERE status = 'rejected'),
	(SELECT count(*) FROM {A} WHERE status = 'unacknowledged'),
	(SELECT min(created_at) FROM {A} WHERE status = 'awaiting'),
	{NOW}
