package outboxdrivertest

import (
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// testLeased runs the scenarios only leased claims have: leases, their
// expiry, and the fencing of every write by RelayID.
func testLeased(t *testing.T, h Harness) {
	t.Parallel()

	lease := func(t *testing.T, b *bundle, relay string, limit int, d time.Duration) []*outboxdriver.EventRow {
		t.Helper()
		rows, err := b.drv.(outboxdriver.LeasedClaimer).EventClaimBatch(b.ctx,
			&outboxdriver.EventClaimBatchParams{RelayID: relay, Limit: limit, Lease: d})
		if err != nil {
			t.Fatalf("EventClaimBatch: %v", err)
		}
		return rows
	}

	t.Run("a claim leases its rows", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		e := ev("k", 1)
		b.insert(t, e)
		rows := lease(t, b, "r1", 10, time.Minute)
		wantIDs(t, "claim", rowIDs(rows), []string{e.ID})
		for _, r := range []*outboxdriver.EventRow{rows[0], b.get(t, e.ID)} {
			if r.LockedBy != "r1" || r.LockedUntil == nil || r.LockedUntil.Before(time.Now().Add(50*time.Second)) ||
				r.LockedUntil.After(time.Now().Add(70*time.Second)) {
				t.Fatalf("leased row %+v: want locked by r1 for a minute", r)
			}
		}
	})

	t.Run("an expired lease is taken over and the old relay is fenced", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		d := b.drv.(outboxdriver.LeasedClaimer)
		e := ev("k", 1)
		b.insert(t, e)
		wantIDs(t, "old relay's claim", rowIDs(lease(t, b, "old", 10, time.Minute)), []string{e.ID})
		wantIDs(t, "claim while leased", rowIDs(lease(t, b, "new", 10, time.Minute)), nil)
		h.Elapse(t, b.drv, 2*time.Minute)
		wantIDs(t, "takeover", rowIDs(lease(t, b, "new", 10, time.Minute)), []string{e.ID})

		ids := []string{e.ID}
		mustN(t, "old relay extends", 0)(d.EventExtendLeases(b.ctx, &outboxdriver.EventExtendLeasesParams{RelayID: "old", IDs: ids, Lease: time.Hour}))
		mustN(t, "old relay marks delivered", 0)(d.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "old", IDs: ids}))
		mustN(t, "old relay marks failed", 0)(d.EventMarkFailed(b.ctx, &outboxdriver.EventMarkFailedParams{RelayID: "old",
			Failures: []outboxdriver.FailedAttempt{{ID: e.ID, Error: "x", Dead: true}}}))
		mustN(t, "old relay releases", 0)(d.EventRelease(b.ctx, &outboxdriver.EventReleaseParams{RelayID: "old", IDs: ids}))
		if r := b.get(t, e.ID); r.LockedBy != "new" || r.Status != outboxdriver.StatusPending || r.Attempts != 0 {
			t.Fatalf("after the fenced writes: %+v", r)
		}

		before := b.get(t, e.ID).LockedUntil
		mustN(t, "new relay extends", 1)(d.EventExtendLeases(b.ctx, &outboxdriver.EventExtendLeasesParams{RelayID: "new", IDs: ids, Lease: time.Hour}))
		if after := b.get(t, e.ID).LockedUntil; after == nil || !after.After(before.Add(30*time.Minute)) {
			t.Fatalf("lease not extended: %v -> %v", before, after)
		}
		mustN(t, "new relay marks delivered", 1)(d.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "new", IDs: ids}))
		if r := b.get(t, e.ID); r.Status != outboxdriver.StatusDelivered || r.Attempts != 1 || r.LockedBy != "" {
			t.Fatalf("after delivery: %+v", r)
		}
	})

	t.Run("release gives the rows back without an attempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		d := b.drv.(outboxdriver.LeasedClaimer)
		e1, e2 := ev("k", 1), ev("k", 2)
		b.insert(t, e1, e2)
		lease(t, b, "r1", 10, time.Hour)
		mustN(t, "release", 2)(d.EventRelease(b.ctx, &outboxdriver.EventReleaseParams{RelayID: "r1", IDs: eventIDs(e1, e2)}))
		for _, id := range eventIDs(e1, e2) {
			if r := b.get(t, id); r.Attempts != 0 || r.LockedBy != "" || r.LockedUntil != nil || r.Status != outboxdriver.StatusPending {
				t.Fatalf("released row %+v", r)
			}
		}
		wantIDs(t, "claim after release", rowIDs(lease(t, b, "r2", 10, time.Minute)), eventIDs(e1, e2))
	})

	t.Run("retry by id leaves leased pending events alone", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		e := ev("", 1)
		b.insert(t, e)
		lease(t, b, "r1", 10, time.Hour)
		mustN(t, "retry a leased event", 0)(b.drv.EventRetry(b.ctx, &outboxdriver.EventRetryParams{IDs: []string{e.ID}}))
		if r := b.get(t, e.ID); r.LockedBy != "r1" {
			t.Fatalf("leased event touched: %+v", r)
		}
	})

	t.Run("empty id lists are no-ops", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		d := b.drv.(outboxdriver.LeasedClaimer)
		mustN(t, "extend", 0)(d.EventExtendLeases(b.ctx, &outboxdriver.EventExtendLeasesParams{RelayID: "r", Lease: time.Hour}))
		mustN(t, "mark delivered", 0)(d.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r"}))
		mustN(t, "mark failed", 0)(d.EventMarkFailed(b.ctx, &outboxdriver.EventMarkFailedParams{RelayID: "r"}))
		mustN(t, "release", 0)(d.EventRelease(b.ctx, &outboxdriver.EventReleaseParams{RelayID: "r"}))
	})
}
