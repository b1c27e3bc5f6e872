package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// claimHeld opens a held claim of up to limit events; the test ends it.
func (b *bundle) claimHeld(t testing.TB, limit int) outboxdriver.HeldBatch {
	t.Helper()
	batch, err := b.drv.EventClaimHeld(b.ctx, &outboxdriver.EventClaimBatchParams{RelayID: "r", Limit: limit})
	if err != nil {
		t.Fatalf("EventClaimHeld: %v", err)
	}
	t.Cleanup(func() { _ = batch.Abort() })
	return batch
}

// keyFree reports whether no session holds key's named lock.
func (b *bundle) keyFree(t testing.TB, key string) bool {
	t.Helper()
	prefix, err := b.drv.lockPrefix(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var free bool
	if err := b.db.QueryRowContext(b.ctx, "SELECT IS_FREE_LOCK(CONCAT(?, MD5(?)))", prefix, key).Scan(&free); err != nil {
		t.Fatal(err)
	}
	return free
}

func TestHeldClaim(t *testing.T) {
	t.Parallel()

	t.Run("FinishRecordsOutcomesAndFreesKeys", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ok, retry, dead, untouched := newEvent("a"), newEvent("b"), newEvent("c"), newEvent("d")
		b.insert(t, ok, retry, dead, untouched)
		batch := b.claimHeld(t, 10)
		if len(batch.Rows()) != 4 || b.keyFree(t, "a") {
			t.Fatalf("claimed %d rows, key a free: %v; want 4 rows and a held", len(batch.Rows()), b.keyFree(t, "a"))
		}
		err := batch.Finish(b.ctx, []string{ok.ID}, []outboxdriver.FailedAttempt{
			{ID: retry.ID, Error: "broker said no", Delay: time.Hour},
			{ID: dead.ID, Error: "poison", Dead: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := b.get(t, ok.ID); r.Status != outboxdriver.StatusDelivered || r.Attempts != 1 || r.DeliveredAt == nil {
			t.Fatalf("delivered event %+v", r)
		}
		if r := b.get(t, retry.ID); r.Status != outboxdriver.StatusPending || r.Attempts != 1 || r.LastError != "broker said no" || time.Until(r.NextAttemptAt) < 50*time.Minute {
			t.Fatalf("retried event %+v", r)
		}
		if r := b.get(t, dead.ID); r.Status != outboxdriver.StatusDead || r.Attempts != 1 || r.LastError != "poison" {
			t.Fatalf("dead event %+v", r)
		}
		if r := b.get(t, untouched.ID); r.Status != outboxdriver.StatusPending || r.Attempts != 0 || r.LockedBy != "" {
			t.Fatalf("event in neither list %+v", r)
		}
		for _, k := range []string{"a", "b", "c", "d"} {
			if !b.keyFree(t, k) {
				t.Fatalf("key %s still locked after Finish", k)
			}
		}
		if err := batch.Finish(b.ctx, nil, nil); err == nil {
			t.Fatal("a second Finish succeeded")
		}
	})

	t.Run("FinishRejectsForeignEvent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := newEvent("a")
		b.insert(t, e)
		batch := b.claimHeld(t, 10)
		err := batch.Finish(b.ctx, []string{"0194a1c2-0000-7000-8000-000000000001"}, nil)
		if err == nil || !strings.Contains(err.Error(), "not part of this batch") {
			t.Fatalf("err %v", err)
		}
		if r := b.get(t, e.ID); r.Status != outboxdriver.StatusPending || !b.keyFree(t, "a") {
			t.Fatalf("after a refused Finish: %+v, key free %v; want pending and free", r, b.keyFree(t, "a"))
		}
	})

	t.Run("AbortLeavesEventsPendingAndFreesKeys", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := newEvent("a")
		b.insert(t, e)
		batch := b.claimHeld(t, 10)
		if err := batch.Abort(); err != nil {
			t.Fatal(err)
		}
		if !b.keyFree(t, "a") || len(b.claimHeld(t, 10).Rows()) != 1 {
			t.Fatal("aborted batch's key or row is still held")
		}
	})

	t.Run("DroppedConnectionFreesItsClaim", func(t *testing.T) {
		// A relay that dies loses its connection; its rows and keys are
		// free at once, without a lease to wait for.
		t.Parallel()
		b := setup(t)
		e := newEvent("a")
		b.insert(t, e)
		batch := b.claimHeld(t, 10).(*heldBatch)
		var id int64
		if err := batch.tx.QueryRowContext(b.ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
			t.Fatal(err)
		}
		if len(b.claimHeld(t, 10).Rows()) != 0 {
			t.Fatal("a second claim took the held event")
		}
		if _, err := b.db.Exec(fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(b.claimHeld(t, 10).Rows()) != 1 {
			if time.Now().After(deadline) {
				t.Fatal("the killed claim's event was not claimable again")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := batch.Finish(b.ctx, []string{e.ID}, nil); err == nil {
			t.Fatal("Finish on a killed connection succeeded")
		}
	})

	t.Run("ConcurrentClaimsNeverShareAKey", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var events []outboxdriver.InsertEvent
		for i := range 600 {
			events = append(events, newEvent(fmt.Sprint("k", i%10)))
		}
		b.insert(t, events...)
		var mu sync.Mutex
		open := map[string]int{} // key -> claimers holding it
		seen := map[string]bool{}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					batch, err := b.drv.EventClaimHeld(b.ctx, &outboxdriver.EventClaimBatchParams{Limit: 25})
					if err != nil {
						t.Error(err)
						return
					}
					rows := batch.Rows()
					mu.Lock()
					done := len(seen) == len(events)
					held := map[string]bool{}
					for _, r := range rows {
						if seen[r.ID] {
							t.Errorf("%s claimed twice", r.ID)
						}
						seen[r.ID] = true
						if !held[r.Key] {
							held[r.Key] = true
							if open[r.Key]++; open[r.Key] > 1 {
								t.Errorf("key %s held by two open claims", r.Key)
							}
						}
					}
					mu.Unlock()
					time.Sleep(time.Millisecond) // hold the claim a little
					mu.Lock()
					for k := range held {
						open[k]--
					}
					mu.Unlock()
					if err := batch.Finish(b.ctx, ids(rows), nil); err != nil {
						t.Error(err)
						return
					}
					if len(rows) == 0 && done {
						return
					}
				}
			})
		}
		wg.Wait()
		if len(seen) != len(events) {
			t.Fatalf("claimed %d of %d", len(seen), len(events))
		}
	})
}

// TestHeldClaimPlan checks the held claim's plan: the ordered scan of
// claim_idx with no filesort, so that the scan, and the key lock it tries on
// each ready row, stops at the limit.
func TestHeldClaimPlan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var events []outboxdriver.InsertEvent
	for i := range 2000 {
		events = append(events, newEvent(fmt.Sprint("k", i%100)))
	}
	b.insert(t, events...)
	if _, err := b.db.Exec("ANALYZE TABLE " + b.drv.table); err != nil {
		t.Fatal(err)
	}
	prefix, err := b.drv.lockPrefix(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, scanLimit := range []int{0, 400} {
		t.Run(fmt.Sprintf("ScanLimit=%d", scanLimit), func(t *testing.T) {
			args := candidateArgs(&outboxdriver.EventClaimBatchParams{Limit: 100, ScanLimit: scanLimit}, prefix)
			checkHeldClaimPlan(t, b.db, "EXPLAIN "+b.drv.queries.claimCandidates, args)
		})
	}
}

// checkHeldClaimPlan fails t unless the claim scans claim_idx in order,
// reads held_idx for the key check and sorts nothing.
func checkHeldClaimPlan(t *testing.T, db *sql.DB, explain string, args []any) {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), explain, args...)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	var plan []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = vals[i].String
		}
		plan = append(plan, row)
	}
	t.Logf("plan: %v", plan)
	if len(plan) == 0 || plan[0]["table"] != "o" || plan[0]["key"] != "claim_idx" {
		t.Fatalf("the claim does not scan claim_idx first: %v", plan)
	}
	// The per-key backoff check reads held_idx.
	var heldIdx bool
	for _, r := range plan {
		heldIdx = heldIdx || (r["table"] == "p" && r["key"] == "held_idx")
	}
	if !heldIdx {
		t.Fatalf("the key check does not read held_idx: %v", plan)
	}
	for _, r := range plan {
		if strings.Contains(r["Extra"], "filesort") || strings.Contains(r["Extra"], "temporary") {
			t.Fatalf("the claim sorts (%s): %v", r["Extra"], plan)
		}
	}
}
