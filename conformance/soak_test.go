package conformance_test

import (
	"flag"
	"testing"

	"github.com/outboxkit/outboxkit/conformance"
)

var soakFor = flag.Duration("soak", 0, "soak duration per cell for TestSoak (e.g. 10m; raise -timeout too); zero means 15s")

// TestSoak soaks one reference cell per database, PostgreSQL × NATS and
// MySQL × NATS: NATS is the networked broker with native dedup and per-key
// order, so every C2/C3/C4 check applies. 15 s per cell by default; `go test
// ./conformance -run Soak -soak 10m -timeout 30m` for a long run.
func TestSoak(t *testing.T) {
	t.Parallel()
	for _, db := range []conformance.Database{conformance.Postgres(), conformance.MySQL()} {
		h := conformance.Harness{Name: db.Name + "_nats", Database: db, Broker: conformance.NATS()}
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			conformance.RunSoak(t, h, conformance.SoakConfig{Duration: *soakFor})
		})
	}
}
