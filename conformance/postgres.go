package conformance

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/drivers/postgres/pgtest"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// Postgres returns the database side of a cell for drivers/postgres on
// lib/pq, at outboxtest.PostgresURL (OUTBOX_TEST_POSTGRES_URL).
func Postgres() Database {
	db := PostgresAt(outboxtest.PostgresURL())
	db.Services = []string{outboxtest.Postgres}
	db.Addr = outboxtest.ServiceAddr(outboxtest.Postgres)
	return db
}

// PostgresAt is Postgres for the database at dsn, a lib/pq URL
// (postgres://user:password@host:5432/db?sslmode=disable). It names no
// Services: the caller checks that the server is reachable.
func PostgresAt(dsn string) Database {
	addr := ""
	if u, err := url.Parse(dsn); err == nil && u.Host != "" {
		addr = u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "5432")
		}
	}
	return Database{
		Name:       "postgres",
		DriverName: "postgres",
		DSN:        dsn,
		Addr:       addr,
		DSNVia: func(addr string) string {
			u, err := url.Parse(dsn)
			if err != nil {
				return dsn
			}
			u.Host = addr
			q := u.Query()
			q.Set("connect_timeout", "5")
			u.RawQuery = q.Encode()
			return u.String()
		},
		NewDriver: func(db *sql.DB, table string) (outboxdriver.Driver, error) {
			return postgres.New(db, postgres.Config{Table: table})
		},
		DropTable: func(db *sql.DB, table string) error {
			_, err := db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_cdc_state", "` + table + `_acks"`)
			if err == nil {
				_, err = db.Exec(`DROP PUBLICATION IF EXISTS "` + postgres.PublicationName("", table) + `"`)
			}
			return err
		},
		LockTimeout: "SET lock_timeout = '1s'",
	}
}

// PostgresCDC returns the database side of a cell for drivers/postgres in
// CDC mode (postgres.NewCDC: the relay streams from a logical replication
// slot), on a PostgreSQL cluster with wal_level=logical that the test
// process starts itself (drivers/postgres/pgtest), or the one at
// OUTBOX_TEST_POSTGRES_CDC_URL. Each test's table gets its own slot and
// publication, dropped with the table.
func PostgresCDC() Database {
	dsn, startErr := pgtest.Start()
	db := PostgresAt(dsn)
	db.Name = "postgres_cdc"
	db.OneRelayStreams = true
	db.Require = func(t testing.TB) {
		t.Helper()
		if startErr != nil {
			pgtest.URL(t) // skips, or fails when required, with the reason
		}
	}
	db.NewDriverAt = func(sqlDB *sql.DB, dsn, table string) (outboxdriver.Driver, error) {
		return postgres.NewCDC(sqlDB, postgres.Config{Table: table}, postgres.CDCConfig{ConnString: dsn})
	}
	db.NewDriver = func(sqlDB *sql.DB, table string) (outboxdriver.Driver, error) {
		return db.NewDriverAt(sqlDB, dsn, table)
	}
	// The slot exists before the test writes, as in production: the
	// events reach the relays through the stream, and a relay killed
	// mid-stream resumes from the slot. (A backlog older than the slot,
	// read from the table, is drivers/postgres's TestCDCBacklogBeforeSlot.)
	db.AfterMigrate = func(drv outboxdriver.Driver) error {
		c, ok := drv.(*postgres.CDC)
		if !ok {
			return fmt.Errorf("driver %T is not postgres.CDC", drv)
		}
		_, err := c.SlotCreate(context.Background())
		return err
	}
	db.DropTable = func(sqlDB *sql.DB, table string) error {
		// The relays have stopped; the server notices their connections
		// ended within moments, and only then lets the slot go.
		slot := postgres.SlotName("", table)
		var err error
		for range 50 {
			_, err = sqlDB.Exec(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("drop slot %s: %w", slot, err)
		}
		_, err = sqlDB.Exec(`DROP PUBLICATION IF EXISTS "` + postgres.PublicationName("", table) + `"`)
		if err != nil {
			return err
		}
		_, err = sqlDB.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_cdc_state", "` + table + `_acks"`)
		return err
	}
	return db
}
