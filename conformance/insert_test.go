package conformance_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/outboxkit/outboxkit/conformance"
)

// eachDatabase runs run, in parallel, on each database of the matrix; the
// SQLite one in its own file named after file.
func eachDatabase(t *testing.T, file string, run func(t *testing.T, db conformance.Database)) {
	sqliteDB := conformance.SQLite(filepath.Join(os.Getenv(sqliteDirEnv), file+".db"))
	for _, db := range []conformance.Database{conformance.Postgres(), conformance.MySQL(), sqliteDB} {
		t.Run(db.Name, func(t *testing.T) {
			t.Parallel()
			run(t, db)
		})
	}
}

// TestInsertStrict runs the Insert strictness test on each database: the
// property is the core's and the driver's, so the in-process broker is
// enough.
func TestInsertStrict(t *testing.T) {
	t.Parallel()
	eachDatabase(t, "insertstrict", func(t *testing.T, db conformance.Database) {
		conformance.RunInsertStrict(t, conformance.Harness{Name: db.Name + "_memory", Database: db, Broker: conformance.Memory()})
	})
}
