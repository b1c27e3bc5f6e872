-- outboxkit PostgreSQL schema, version 5 (4 is the CDC schema; versions
-- are applied in order, whatever is missing).
-- Business acknowledgments: one row per event inserted with AwaitAck,
-- written in the writer's transaction. Durations are milliseconds.
CREATE TABLE IF NOT EXISTS {{.AckTable}} (
    event_id          uuid        PRIMARY KEY,
    status            text        NOT NULL DEFAULT 'awaiting'
                                  CHECK (status IN ('awaiting', 'acknowledged', 'rejected', 'unacknowledged')),
    reason            text        NOT NULL DEFAULT '',
    deadline_ms       bigint      NOT NULL,
    resend_backoff_ms bigint      NOT NULL,
    max_resends       integer     NOT NULL,
    resends           integer     NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    answered_at       timestamptz,
    resent_at         timestamptz
);

-- The sweeper and the awaiting/oldest counters read awaiting rows only.
CREATE INDEX IF NOT EXISTS {{idx "acks_awaiting"}} ON {{.AckTable}} (created_at) WHERE status = 'awaiting';
-- List by ack state, the rejected and unacknowledged counters.
CREATE INDEX IF NOT EXISTS {{idx "acks_status"}} ON {{.AckTable}} (status) WHERE status <> 'acknowledged';
