package conformance_test

import (
	"testing"

	"github.com/outboxkit/outboxkit/conformance"
)

// TestUnreadableRow runs the C7 unreadable-row test on each database with
// NATS: the property is the relay's and the driver's, so one broker per
// database is enough.
func TestUnreadableRow(t *testing.T) {
	t.Parallel()
	eachDatabase(t, "unreadable", func(t *testing.T, db conformance.Database) {
		conformance.RunUnreadableRow(t, conformance.Harness{Name: db.Name + "_nats", Database: db, Broker: conformance.NATS()})
	})
}
