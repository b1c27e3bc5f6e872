package mysql

import (
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest/consoletest"
)

// TestConsoleQueries runs the web console's shared query check (MySQL has
// no outboxdriver.Inspector: dead groups come from the fallback scan).
func TestConsoleQueries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ob, err := outbox.New(b.drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	consoletest.Run(t, consoletest.Dialect{DB: b.db, Outbox: ob,
		MarkDead: func(id, lastError string) error {
			_, err := b.db.Exec(`UPDATE `+b.drv.table+` SET status = 'dead', last_error = ? WHERE id = ?`, lastError, id)
			return err
		},
		MarkDelivered: func(id string, created, delivered time.Time) error {
			_, err := b.db.Exec(`UPDATE `+b.drv.table+` SET status = 'delivered', created_at = ?, delivered_at = ? WHERE id = ?`,
				created, delivered, id)
			return err
		},
	})
}
