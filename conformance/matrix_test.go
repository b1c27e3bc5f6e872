package conformance_test

import (
	"testing"

	"github.com/outboxkit/outboxkit/conformance"
)

// databases lists the database sides of the matrix. A new dialect adds
// one line here (and a constructor like conformance.Postgres()).
func databases() []conformance.Database {
	return []conformance.Database{
		conformance.Postgres(),
		conformance.MySQL(),
	}
}

// brokers lists the broker sides of the matrix.
func brokers() []conformance.Broker {
	return []conformance.Broker{
		conformance.NATS(),
		conformance.GoChannel(),
	}
}

// TestMatrix runs the conformance suite on every database × broker cell.
func TestMatrix(t *testing.T) {
	for _, db := range databases() {
		for _, b := range brokers() {
			h := conformance.Harness{Name: db.Name + "_" + b.Name, Database: db, Broker: b}
			t.Run(h.Name, func(t *testing.T) {
				t.Parallel()
				conformance.Run(t, h)
			})
		}
	}
}
