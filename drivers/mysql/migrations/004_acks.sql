-- outboxkit MySQL/MariaDB schema, version 4.
-- Business acknowledgments: one row per event inserted with AwaitAck,
-- written in the writer's transaction ({{.AckTable}} is the outbox table's
-- name with "_acks"). Durations are milliseconds; times are UTC.
CREATE TABLE IF NOT EXISTS {{.AckTable}} (
    event_id          CHAR(36)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    status            VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'awaiting',
    reason            TEXT         NOT NULL,
    deadline_ms       BIGINT       NOT NULL,
    resend_backoff_ms BIGINT       NOT NULL,
    max_resends       INT          NOT NULL,
    resends           INT          NOT NULL DEFAULT 0,
    created_at        DATETIME(6)  NOT NULL,
    answered_at       DATETIME(6)  NULL,
    resent_at         DATETIME(6)  NULL,
    PRIMARY KEY (event_id),
    -- The sweep, the list by ack state and the counters.
    KEY status_idx (status, created_at),
    CHECK (status IN ('awaiting', 'acknowledged', 'rejected', 'unacknowledged'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
