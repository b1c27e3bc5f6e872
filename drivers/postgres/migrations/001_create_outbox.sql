-- outboxkit PostgreSQL schema, version 1.
-- {{.Table}} is the validated, quoted, optionally schema-qualified table;
-- {{idx "x"}} a quoted index name derived from it.
CREATE TABLE IF NOT EXISTS {{.Table}} (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              uuid        NOT NULL,
    type            text        NOT NULL,
    topic           text        NOT NULL,
    key             text        NOT NULL DEFAULT '',
    payload         bytea       NOT NULL,
    headers         jsonb       NOT NULL DEFAULT '{}',
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    locked_by       text,
    locked_until    timestamptz
);

-- Idempotent inserts by id and lookups by id.
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
