-- outboxkit SQLite schema, version 1.
-- {{.Table}} is the validated, quoted table; {{idx "x"}} a quoted index name
-- derived from it. Times are INTEGER unix microseconds (UTC), compared in SQL.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    -- AUTOINCREMENT: a seq is never reused, even after purge, so it stays a
    -- valid List cursor. SQLite has one writer, so seq order is commit order.
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    key             TEXT    NOT NULL DEFAULT '',
    payload         BLOB    NOT NULL,
    headers         TEXT    NOT NULL DEFAULT '{}',
    status          TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    locked_by       TEXT,
    locked_until    INTEGER
) STRICT;

-- Idempotent inserts by id (ON CONFLICT(id)) and lookups by id.
CREATE UNIQUE INDEX IF NOT EXISTS {{idx "id"}} ON {{.Table}} (id);

-- The claim scan: pending events in insertion order. Partial, so delivered
-- history never slows the relay down.
CREATE INDEX IF NOT EXISTS {{idx "pending"}} ON {{.Table}} (seq) WHERE status = 'pending';

-- Per-key blocking check: the few pending events that are leased or in
-- backoff. Only these can hold back later events of their key.
CREATE INDEX IF NOT EXISTS {{idx "inplay"}} ON {{.Table}} (key, seq)
    WHERE status = 'pending' AND (locked_by IS NOT NULL OR attempts > 0);

-- Admin list by status, and the dead count.
CREATE INDEX IF NOT EXISTS {{idx "status"}} ON {{.Table}} (status, seq);

-- Purge and the delivered-in-the-last-minute counter.
CREATE INDEX IF NOT EXISTS {{idx "delivered"}} ON {{.Table}} (delivered_at) WHERE status = 'delivered';
