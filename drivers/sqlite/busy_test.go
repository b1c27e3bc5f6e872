package sqlite_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/drivers/sqlite"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// TestWritersNeverBusyWhileRelaysRun runs relays at their worst, claiming
// and recording in tight loops with no poll sleep, on the same database as
// an application writer whose busy timeout is a fifth of the default. Every
// application INSERT must commit: the relays' write transactions are short
// and, queued one at a time with a pause after each, never hold SQLite's
// lock long enough, often enough, to starve the writer.
func TestWritersNeverBusyWhileRelaysRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const relays = 4
	var wg sync.WaitGroup
	var relayErrs, relayed, claims atomic.Int64
	for r := range relays {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("relay-%d", r)
			for ctx.Err() == nil {
				rows, err := b.drv.EventClaimBatch(ctx, &outboxdriver.EventClaimBatchParams{RelayID: id, Limit: 10, Lease: time.Minute})
				if err != nil {
					if ctx.Err() == nil {
						relayErrs.Add(1)
					}
					continue
				}
				claims.Add(1)
				if len(rows) == 0 {
					continue
				}
				if _, err := b.drv.EventMarkDelivered(ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: id, IDs: idsOf(rows)}); err != nil && ctx.Err() == nil {
					relayErrs.Add(1)
				}
				relayed.Add(int64(len(rows)))
			}
		}()
	}
	defer wg.Wait()
	defer cancel()

	conn, err := b.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", sqlite.DefaultBusyTimeout.Milliseconds()/5)); err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		tx, err := conn.BeginTx(ctx, nil)
		if err == nil {
			err = b.ob.Insert(ctx, tx, &outbox.Event{Type: "busy", Topic: "t", Key: fmt.Sprint(i % 5), Payload: []byte("{}")})
			if err == nil {
				err = tx.Commit()
			} else {
				_ = tx.Rollback()
			}
		}
		if err != nil {
			t.Fatalf("application write %d failed while relays run: %v", i, err)
		}
	}
	t.Logf("relays recorded %d events meanwhile in %d claims, %d relay errors", relayed.Load(), claims.Load(), relayErrs.Load())
}
