package conformance_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/outboxkit/outboxkit/conformance"
)

// TestUnreadableRow runs the C7 unreadable-row test on each database with
// NATS: the property is the relay's and the driver's, so one broker per
// database is enough.
func TestUnreadableRow(t *testing.T) {
	t.Parallel()
	sqliteDB := conformance.SQLite(filepath.Join(os.Getenv(sqliteDirEnv), "unreadable.db"))
	for _, db := range []conformance.Database{conformance.Postgres(), conformance.MySQL(), sqliteDB} {
		h := conformance.Harness{Name: db.Name + "_nats", Database: db, Broker: conformance.NATS()}
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			conformance.RunUnreadableRow(t, h)
		})
	}
}
