package conformance_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/outboxkit/outboxkit/conformance"
)

// TestInbox runs the inbox conformance (exactly-once effects over
// redelivery and concurrent consumers, with NATS JetStream) on each database.
func TestInbox(t *testing.T) {
	t.Parallel()
	sqliteDB := conformance.SQLite(filepath.Join(os.Getenv(sqliteDirEnv), "inbox.db"))
	for _, db := range []conformance.Database{conformance.Postgres(), conformance.MySQL(), sqliteDB} {
		t.Run(db.Name, func(t *testing.T) {
			t.Parallel()
			conformance.RunInbox(t, db)
		})
	}
}
