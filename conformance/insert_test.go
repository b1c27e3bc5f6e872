package conformance_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/outboxkit/outboxkit/conformance"
)

// TestInsertStrict runs the Insert strictness test on each database: the
// property is the core's and the driver's, so the in-process broker is
// enough.
func TestInsertStrict(t *testing.T) {
	t.Parallel()
	sqliteDB := conformance.SQLite(filepath.Join(os.Getenv(sqliteDirEnv), "insertstrict.db"))
	for _, db := range []conformance.Database{conformance.Postgres(), conformance.MySQL(), sqliteDB} {
		h := conformance.Harness{Name: db.Name + "_memory", Database: db, Broker: conformance.Memory()}
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			conformance.RunInsertStrict(t, h)
		})
	}
}
