package conformance

import (
	"database/sql"
	"strings"

	"github.com/outboxkit/outboxkit/drivers/sqlite"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// SQLite returns the database side of a cell for drivers/sqlite
// (modernc.org/sqlite, registered as "sqlite") on the database file at path,
// opened with sqlite.DSN's settings (WAL, busy timeout, immediate
// transactions). Every test gets its own table in that one file. The
// subprocess relay of the SIGKILL test opens the same file, so path must be
// the same in the re-executed test binary (the matrix passes it through the
// environment).
//
// SQLite is a file, not a server: there is nothing to cut, so the
// database-cut and unreachable-DSN tests are skipped (no Addr, no DSNVia).
// It runs one write transaction at a time (SerialWriters): the
// out-of-order-commit test does not apply.
func SQLite(path string) Database {
	return Database{
		Name:       "sqlite",
		DriverName: "sqlite",
		// A cell's tests run in parallel on one file, each with ten
		// writers and several relays: SQLite's busy handler is no queue, so
		// a writer can wait several seconds for its turn on a slow machine
		// (-race): wait up to 60 s instead of DSN's 5 s.
		DSN: strings.Replace(sqlite.DSN(path), "busy_timeout(5000)", "busy_timeout(60000)", 1),
		NewDriver: func(db *sql.DB, table string) (outboxdriver.Driver, error) {
			return sqlite.New(db, sqlite.Config{Table: table})
		},
		DropTable: func(db *sql.DB, table string) error {
			_, err := db.Exec(`DROP TABLE IF EXISTS "` + table + `"`)
			if err == nil {
				_, err = db.Exec(`DROP TABLE IF EXISTS "` + table + `_migrations"`)
			}
			if err == nil {
				_, err = db.Exec(`DROP TABLE IF EXISTS "` + table + `_acks"`)
			}
			return err
		},
		SerialWriters: true,
		// busy_timeout bounds how long a statement waits for another
		// connection's write lock: SQLite's "lock timeout". The writer also
		// waits for the other tests' writers of the cell (one write lock per
		// file), so the bound is generous; a relay holding the lock while it
		// is stuck on the broker would still hold it for minutes.
		LockTimeout: "PRAGMA busy_timeout = 30000",
	}
}
