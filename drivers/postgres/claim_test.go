package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// TestClaimSkippedEarlierRowHoldsBackItsKey: a claim skips (SKIP LOCKED) a
// row another transaction has locked; the key's later rows must not be
// claimed ahead of it, by either claim strategy.
func TestClaimSkippedEarlierRowHoldsBackItsKey(t *testing.T) {
	t.Parallel()
	claims := map[string]func(b *bundle) ([]string, func()){
		"held": func(b *bundle) ([]string, func()) {
			batch, err := b.drv.EventClaimHeld(context.Background(), &outboxdriver.EventClaimBatchParams{RelayID: "r", Limit: 10, Lease: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			return rowIDs(batch.Rows()), func() { _ = batch.Abort() }
		},
		"leased": func(b *bundle) ([]string, func()) {
			rows, err := b.drv.EventClaimBatch(context.Background(), &outboxdriver.EventClaimBatchParams{RelayID: "r", Limit: 10, Lease: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			return rowIDs(rows), func() {
				_, _ = b.drv.EventRelease(context.Background(), &outboxdriver.EventReleaseParams{RelayID: "r", IDs: rowIDs(rows)})
			}
		},
	}
	for name, claim := range claims {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			k := []*outbox.Event{ev("k", 0), ev("k", 1), ev("k", 2)}
			other := ev("other", 0)
			b.insert(t, append(k, other)...)

			tx, err := b.db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.Exec(fmt.Sprintf("SELECT 1 FROM %s WHERE id = $1 FOR UPDATE", b.drv.Table()), k[0].ID); err != nil {
				t.Fatal(err)
			}
			got, done := claim(b)
			if !slices.Equal(got, []string{other.ID}) {
				done()
				t.Fatalf("claimed %v while the key's first row was locked, want only %s", got, other.ID)
			}
			done()
			_ = tx.Rollback()

			got, done = claim(b)
			defer done()
			if want := []string{k[0].ID, k[1].ID, k[2].ID, other.ID}; !slices.Equal(got, want) {
				t.Fatalf("after the lock: claimed %v, want %v", got, want)
			}
		})
	}
}

func rowIDs(rows []*outboxdriver.EventRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}
