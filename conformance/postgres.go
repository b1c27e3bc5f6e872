package conformance

import (
	"database/sql"
	"net"
	"net/url"

	"github.com/outboxkit/outboxkit/drivers/postgres"
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
			_, err := db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_acks"`)
			return err
		},
		LockTimeout: "SET lock_timeout = '1s'",
	}
}
