package outboxdrivertest

import (
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// batch is one claim, whatever the protocol: its rows, and how to record
// outcomes (finish) or give it back untouched (abort).
type batch struct {
	rows   []*outboxdriver.EventRow
	finish func(t *testing.T, delivered []string, failed []outboxdriver.FailedAttempt)
	abort  func(t *testing.T)
}

// claimer opens a batch with the driver's claim protocol.
type claimer interface {
	claim(t *testing.T, relayID string, limit int, fromSeq int64) *batch
}

func claimerOf(t *testing.T, b *bundle) claimer {
	t.Helper()
	switch d := b.drv.(type) {
	case outboxdriver.HeldClaimer:
		return heldClaimer{b: b, d: d}
	case outboxdriver.LeasedClaimer:
		return leasedClaimer{b: b, d: d}
	}
	t.Fatalf("driver %T implements no claim protocol", b.drv)
	return nil
}

type heldClaimer struct {
	b *bundle
	d outboxdriver.HeldClaimer
}

// claim opens a held batch; it is aborted when the test ends unless
// finished or aborted before.
func (c heldClaimer) claim(t *testing.T, relayID string, limit int, fromSeq int64) *batch {
	t.Helper()
	hb, err := c.d.EventClaimHeld(c.b.ctx, &outboxdriver.EventClaimBatchParams{RelayID: relayID, Limit: limit, FromSeq: fromSeq})
	if err != nil {
		t.Fatalf("EventClaimHeld: %v", err)
	}
	t.Cleanup(func() { _ = hb.Abort() })
	return &batch{
		rows: hb.Rows(),
		finish: func(t *testing.T, delivered []string, failed []outboxdriver.FailedAttempt) {
			t.Helper()
			if err := hb.Finish(c.b.ctx, delivered, failed); err != nil {
				t.Fatalf("Finish: %v", err)
			}
		},
		abort: func(t *testing.T) {
			t.Helper()
			if err := hb.Abort(); err != nil {
				t.Fatalf("Abort: %v", err)
			}
		},
	}
}

type leasedClaimer struct {
	b *bundle
	d outboxdriver.LeasedClaimer
}

// claim leases a batch for a minute; finishing marks the outcomes and
// releases the rest, aborting releases everything.
func (c leasedClaimer) claim(t *testing.T, relayID string, limit int, _ int64) *batch {
	t.Helper()
	rows, err := c.d.EventClaimBatch(c.b.ctx, &outboxdriver.EventClaimBatchParams{RelayID: relayID, Limit: limit, Lease: time.Minute})
	if err != nil {
		t.Fatalf("EventClaimBatch: %v", err)
	}
	release := func(t *testing.T, done map[string]bool) {
		t.Helper()
		var rest []string
		for _, r := range rows {
			if !done[r.ID] {
				rest = append(rest, r.ID)
			}
		}
		mustN(t, "EventRelease", int64(len(rest)))(c.d.EventRelease(c.b.ctx, &outboxdriver.EventReleaseParams{RelayID: relayID, IDs: rest}))
	}
	return &batch{
		rows: rows,
		finish: func(t *testing.T, delivered []string, failed []outboxdriver.FailedAttempt) {
			t.Helper()
			done := map[string]bool{}
			mustN(t, "EventMarkDelivered", int64(len(delivered)))(c.d.EventMarkDelivered(c.b.ctx,
				&outboxdriver.EventMarkDeliveredParams{RelayID: relayID, IDs: delivered}))
			mustN(t, "EventMarkFailed", int64(len(failed)))(c.d.EventMarkFailed(c.b.ctx,
				&outboxdriver.EventMarkFailedParams{RelayID: relayID, Failures: failed}))
			for _, id := range delivered {
				done[id] = true
			}
			for _, f := range failed {
				done[f.ID] = true
			}
			release(t, done)
		},
		abort: func(t *testing.T) { t.Helper(); release(t, nil) },
	}
}
