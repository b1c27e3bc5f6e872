package sqlite_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/drivers/sqlite"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxdrivertest"
)

// TestDriver runs the shared driver suite, each test on a database file of
// its own.
func TestDriver(t *testing.T) {
	t.Parallel()
	outboxdrivertest.Run(t, outboxdrivertest.Harness{
		NewDriver: func(t *testing.T) outboxdriver.Driver {
			db, err := sqlite.Open(filepath.Join(t.TempDir(), "outbox.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			drv, err := sqlite.New(db, sqlite.Config{})
			if err != nil {
				t.Fatal(err)
			}
			return drv
		},
		// Times are unix microseconds.
		Elapse: func(t *testing.T, drv outboxdriver.Driver, d time.Duration) {
			_, err := drv.DB().ExecContext(t.Context(), `UPDATE `+drv.Table()+` SET
	created_at = created_at - ?1, next_attempt_at = next_attempt_at - ?1,
	delivered_at = delivered_at - ?1, locked_until = locked_until - ?1`, d.Microseconds())
			if err != nil {
				t.Fatal(err)
			}
		},
		SingleWriter: true,
	})
}
