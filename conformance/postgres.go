package conformance

import (
	"database/sql"
	"net/url"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// Postgres returns the database side of a cell for drivers/postgres on
// lib/pq, at outboxtest.PostgresURL (OUTBOX_TEST_POSTGRES_URL).
func Postgres() Database {
	dsn := outboxtest.PostgresURL()
	return Database{
		Name:       "postgres",
		Services:   []string{outboxtest.Postgres},
		DriverName: "postgres",
		DSN:        dsn,
		Addr:       outboxtest.ServiceAddr(outboxtest.Postgres),
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
			_, err := db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations"`)
			return err
		},
		LockTimeout: "SET lock_timeout = '1s'",
	}
}
