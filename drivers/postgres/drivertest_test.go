package postgres_test

import (
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxdrivertest"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// TestDriver runs the shared driver suite.
func TestDriver(t *testing.T) {
	t.Parallel()
	outboxdrivertest.Run(t, outboxdrivertest.Harness{
		NewDriver: func(t *testing.T) outboxdriver.Driver {
			db := openDB(t)
			table := outboxtest.UniqueName("ob")
			t.Cleanup(func() {
				_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_acks"`)
			})
			drv, err := postgres.New(db, postgres.Config{Table: table})
			if err != nil {
				t.Fatal(err)
			}
			return drv
		},
		Elapse: func(t *testing.T, drv outboxdriver.Driver, d time.Duration) {
			_, err := drv.DB().ExecContext(t.Context(), `UPDATE `+drv.Table()+` SET
	created_at = created_at - $1 * interval '1 microsecond',
	next_attempt_at = next_attempt_at - $1 * interval '1 microsecond',
	delivered_at = delivered_at - $1 * interval '1 microsecond',
	locked_until = locked_until - $1 * interval '1 microsecond'`, d.Microseconds())
			if err != nil {
				t.Fatal(err)
			}
		},
	})
}
