package mysql

import (
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest/consoletest"
)

// TestConsoleQueries runs the web console's shared query check.
func TestConsoleQueries(t *testing.T) {
	t.Parallel()
	consoletest.Run(t, func(t *testing.T) consoletest.Dialect {
		b := setup(t)
		ob, err := outbox.New(b.drv, outbox.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return consoletest.Dialect{DB: b.db, Outbox: ob,
			MarkDead: func(id, lastError string) error {
				_, err := b.db.Exec(`UPDATE `+b.drv.table+` SET status = 'dead', last_error = ? WHERE id = ?`, lastError, id)
				return err
			},
			MarkDelivered: func(id string, created, delivered time.Time) error {
				_, err := b.db.Exec(`UPDATE `+b.drv.table+` SET status = 'delivered', created_at = ?, delivered_at = ? WHERE id = ?`,
					created, delivered, id)
				return err
			},
		}
	})
}
