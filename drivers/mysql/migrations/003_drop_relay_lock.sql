-- outboxkit MySQL/MariaDB schema, version 3.
-- Relays claim with held transactions only (GET_LOCK per key): the leased
-- claim and the table that serialized it are gone.
DROP TABLE IF EXISTS {{.LockTable}};
