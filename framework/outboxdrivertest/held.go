package outboxdrivertest

import (
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// testHeld runs the scenarios only held claims have.
func testHeld(t *testing.T, h Harness) {
	t.Parallel()

	claim := func(t *testing.T, b *bundle, p outboxdriver.EventClaimBatchParams) outboxdriver.HeldBatch {
		t.Helper()
		hb, err := b.drv.(outboxdriver.HeldClaimer).EventClaimHeld(b.ctx, &p)
		if err != nil {
			t.Fatalf("EventClaimHeld: %v", err)
		}
		t.Cleanup(func() { _ = hb.Abort() })
		return hb
	}

	t.Run("delivery clears the error of an earlier attempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		e := ev("k", 1)
		b.insert(t, e)
		first := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10})
		if err := first.Finish(b.ctx, nil, []outboxdriver.FailedAttempt{{ID: e.ID, Error: "broker down", Delay: time.Millisecond}}); err != nil {
			t.Fatal(err)
		}
		if r := b.get(t, e.ID); r.LastError != "broker down" || r.Attempts != 1 {
			t.Fatalf("after the failed attempt: %+v", r)
		}
		h.Elapse(t, b.drv, time.Minute)
		second := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10})
		wantIDs(t, "retry claim", rowIDs(second.Rows()), []string{e.ID})
		if err := second.Finish(b.ctx, []string{e.ID}, nil); err != nil {
			t.Fatal(err)
		}
		if r := b.get(t, e.ID); r.Status != outboxdriver.StatusDelivered || r.Attempts != 2 || r.LastError != "" {
			t.Fatalf("delivered after a failed attempt: %+v; want delivered, 2 attempts, no last error", r)
		}
	})

	t.Run("FromSeq leaves the events below it", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		evs := []*outbox.Event{ev("a", 0), ev("", 1), ev("c", 2), ev("", 3)}
		b.insert(t, evs...)
		all := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10})
		wantIDs(t, "claim without a hint", rowIDs(all.Rows()), eventIDs(evs...))
		from := all.Rows()[2].Seq
		if err := all.Abort(); err != nil {
			t.Fatal(err)
		}
		hinted := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10, FromSeq: from})
		wantIDs(t, "claim from the third seq", rowIDs(hinted.Rows()), eventIDs(evs[2:]...))
	})

	t.Run("FromSeq never skips a key's earlier pending event", func(t *testing.T) {
		// Per-key order does not rest on the hint: a key whose earlier
		// event lies below it is left for a claim without the hint.
		t.Parallel()
		b := setup(t, h)
		a0, b0, a1, c0 := ev("a", 0), ev("b", 0), ev("a", 1), ev("c", 0)
		b.insert(t, a0, b0, a1, c0)
		from := b.get(t, a1.ID).Seq
		hinted := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10, FromSeq: from})
		wantIDs(t, "claim from a1's seq", rowIDs(hinted.Rows()), eventIDs(c0))
		if err := hinted.Abort(); err != nil {
			t.Fatal(err)
		}
		wantIDs(t, "claim without the hint", rowIDs(claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10}).Rows()),
			eventIDs(a0, b0, a1, c0))
	})

	t.Run("ScanLimit bounds the scan", func(t *testing.T) {
		// A claim made while another batch holds a key examines at most
		// ScanLimit pending events: the held key's later events fill the
		// window, so the free key after them waits for an unbounded claim.
		t.Parallel()
		b := setup(t, h)
		a := []*outbox.Event{ev("a", 0), ev("a", 1), ev("a", 2), ev("a", 3)}
		c0 := ev("c", 0)
		b.insert(t, append(a, c0)...)
		holder := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 1})
		wantIDs(t, "the first claim", rowIDs(holder.Rows()), eventIDs(a[0]))
		narrow := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10, ScanLimit: 4})
		wantIDs(t, "a claim examining 4 pending events (a0..a3)", rowIDs(narrow.Rows()), nil)
		if err := narrow.Abort(); err != nil {
			t.Fatal(err)
		}
		wide := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10, ScanLimit: 5})
		wantIDs(t, "a claim examining 5 pending events (a0..c0)", rowIDs(wide.Rows()), eventIDs(c0))
		if err := wide.Abort(); err != nil {
			t.Fatal(err)
		}
		unbounded := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10})
		wantIDs(t, "an unbounded claim", rowIDs(unbounded.Rows()), eventIDs(c0))
	})

	t.Run("an empty batch finishes and aborts", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		hb := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10})
		if len(hb.Rows()) != 0 {
			t.Fatalf("claimed %d rows from an empty table", len(hb.Rows()))
		}
		if err := hb.Finish(b.ctx, nil, nil); err != nil {
			t.Fatalf("Finish of an empty batch: %v", err)
		}
		if err := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10}).Abort(); err != nil {
			t.Fatalf("Abort of an empty batch: %v", err)
		}
	})

	t.Run("Finish refuses an event of another batch", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		e := ev("a", 1)
		b.insert(t, e)
		hb := claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10})
		if err := hb.Finish(b.ctx, []string{"0194a1c2-0000-7000-8000-000000000001"}, nil); err == nil {
			t.Fatal("Finish accepted an event that is not in the batch")
		}
		_ = hb.Abort()
		if r := b.get(t, e.ID); r.Status != outboxdriver.StatusPending || r.Attempts != 0 {
			t.Fatalf("after a refused Finish: %+v", r)
		}
		wantIDs(t, "claim after the refused Finish", rowIDs(claim(t, b, outboxdriver.EventClaimBatchParams{Limit: 10}).Rows()), []string{e.ID})
	})
}
