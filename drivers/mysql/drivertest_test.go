package mysql

import (
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxdrivertest"
)

// TestDriver runs the shared driver suite.
func TestDriver(t *testing.T) {
	t.Parallel()
	outboxdrivertest.Run(t, outboxdrivertest.Harness{
		NewDriver: func(t *testing.T) outboxdriver.Driver { return setupUnmigrated(t).drv },
		Elapse: func(t *testing.T, drv outboxdriver.Driver, d time.Duration) {
			_, err := drv.DB().ExecContext(t.Context(), `UPDATE `+drv.Table()+` SET
	created_at = created_at - INTERVAL ? MICROSECOND,
	next_attempt_at = next_attempt_at - INTERVAL ? MICROSECOND,
	delivered_at = delivered_at - INTERVAL ? MICROSECOND,
	locked_until = locked_until - INTERVAL ? MICROSECOND`, d.Microseconds(), d.Microseconds(), d.Microseconds(), d.Microseconds())
			if err != nil {
				t.Fatal(err)
			}
		},
	})
}
