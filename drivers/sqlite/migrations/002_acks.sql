-- outboxkit SQLite schema, version 2.
-- Business acknowledgments: one row per event inserted with AwaitAck,
-- written in the writer's transaction ({{.AckTable}} is the outbox table's
-- name with "_acks"). Durations are milliseconds; times unix microseconds.
CREATE TABLE IF NOT EXISTS {{.AckTable}} (
    event_id          TEXT    NOT NULL PRIMARY KEY,
    status            TEXT    NOT NULL DEFAULT 'awaiting'
                              CHECK (status IN ('awaiting', 'acknowledged', 'rejected', 'unacknowledged')),
    reason            TEXT    NOT NULL DEFAULT '',
    deadline_ms       INTEGER NOT NULL,
    resend_backoff_ms INTEGER NOT NULL,
    max_resends       INTEGER NOT NULL,
    resends           INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    answered_at       INTEGER,
    resent_at         INTEGER
) STRICT;

-- The sweep, the list by ack state and the counters.
CREATE INDEX IF NOT EXISTS {{idx "acks_status"}} ON {{.AckTable}} (status, created_at);
