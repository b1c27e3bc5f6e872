-- outboxkit MySQL/MariaDB schema, version 1.
-- {{.Table}} and {{.LockTable}} are validated, backtick-quoted table names.
-- Statements are separated by a semicolon at the end of a line; each must be
-- idempotent because MySQL commits DDL implicitly (no transactional migrations).
-- Only features of MySQL 8.0.1 and MariaDB 10.6 are used (no partial indexes,
-- no expression defaults, no CREATE INDEX IF NOT EXISTS, no JSON_TABLE).

-- Index names are scoped to their table in MySQL, so they need no table prefix
-- and stay short whatever the table name.
--
-- held_key emulates PostgreSQL's partial "inplay" index: it holds event_key
-- only for pending events that are leased or were attempted (the only rows
-- that can hold back later events of their key) and NULL otherwise, so the
-- per-key check of the claim reads a handful of index entries.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    seq             BIGINT        NOT NULL AUTO_INCREMENT,
    id              CHAR(36)      CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    type            VARCHAR(255)  NOT NULL,
    topic           VARCHAR(255)  NOT NULL,
    event_key       VARCHAR(255)  NOT NULL DEFAULT '',
    payload         LONGBLOB      NOT NULL,
    headers         JSON          NOT NULL,
    status          VARCHAR(16)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'pending',
    attempts        INT           NOT NULL DEFAULT 0,
    last_error      TEXT          NULL,
    created_at      DATETIME(6)   NOT NULL,
    next_attempt_at DATETIME(6)   NOT NULL DEFAULT '1970-01-01 00:00:00',
    delivered_at    DATETIME(6)   NULL,
    locked_by       VARCHAR(128)  NULL,
    locked_until    DATETIME(6)   NULL,
    held_key        VARCHAR(255)  GENERATED ALWAYS AS (
                        CASE WHEN status = 'pending' AND (locked_by IS NOT NULL OR attempts > 0)
                        THEN event_key END) STORED,
    PRIMARY KEY (seq),
    -- Idempotent inserts by id and lookups by id.
    UNIQUE KEY id_uq (id),
    -- The claim scan (pending events in insertion order), admin list by
    -- status and the pending/dead counters.
    KEY claim_idx (status, seq),
    -- Per-key blocking check of the claim.
    KEY held_idx (held_key, seq),
    -- Purge and the delivered-in-the-last-minute counter.
    KEY delivered_idx (status, delivered_at),
    CHECK (status IN ('pending', 'delivered', 'dead'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row that only relays lock (SELECT ... FOR UPDATE) to serialize claims,
-- like PostgreSQL's pg_advisory_xact_lock: transactional, so a crashed relay
-- never leaves it held. Applications never touch this table.
CREATE TABLE IF NOT EXISTS {{.LockTable}} (
    id INT NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB;

INSERT INTO {{.LockTable}} (id) VALUES (1) ON DUPLICATE KEY UPDATE id = id;
