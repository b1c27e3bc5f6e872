package conformance_test

import (
	"testing"

	"github.com/outboxkit/outboxkit/conformance"
)

// TestInbox runs the inbox conformance (exactly-once effects over
// redelivery and concurrent consumers, with NATS JetStream) on each database.
func TestInbox(t *testing.T) {
	t.Parallel()
	eachDatabase(t, "inbox", conformance.RunInbox)
}
