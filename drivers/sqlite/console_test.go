package sqlite_test

import (
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxtest/consoletest"
)

// TestConsoleQueries runs the web console's shared query check.
func TestConsoleQueries(t *testing.T) {
	t.Parallel()
	consoletest.Run(t, func(t *testing.T) consoletest.Dialect {
		b := setup(t)
		return consoletest.Dialect{DB: b.db, Outbox: b.ob,
			MarkDead: func(id, lastError string) error {
				_, err := b.db.Exec(`UPDATE outbox SET status = 'dead', last_error = ?2 WHERE id = ?1`, id, lastError)
				return err
			},
			MarkDelivered: func(id string, created, delivered time.Time) error {
				_, err := b.db.Exec(`UPDATE outbox SET status = 'delivered', created_at = ?2, delivered_at = ?3 WHERE id = ?1`,
					id, created.UnixMicro(), delivered.UnixMicro())
				return err
			},
		}
	})
}
