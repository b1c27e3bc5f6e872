package outboxdrivertest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// testAck covers outboxdriver.Acknowledger, for drivers that implement it:
// ack rows written with the events, answers (first one kept, unknown ids
// refused), the due list (only delivered, overdue, awaiting events), the
// conditional resend and give-up marks, re-arming and the counters.
func testAck(t *testing.T, h Harness) {
	t.Parallel()
	b := setup(t, h)
	ack := b.drv.(outboxdriver.Acknowledger)
	policy := outbox.AckPolicy{Deadline: time.Hour, MaxResends: 1, ResendBackoff: 1500 * time.Millisecond}
	a, answered, plain := ev("a", 1), ev("b", 2), ev("c", 3)
	a.AwaitAck, answered.AwaitAck = &policy, &policy
	b.insert(t, a, answered, plain)

	get := func(id string) *outboxdriver.AckRow {
		t.Helper()
		rows, err := ack.AckGet(b.ctx, &outboxdriver.AckGetParams{IDs: []string{id}})
		if err != nil {
			t.Fatalf("AckGet: %v", err)
		}
		return rows[id]
	}
	due := func() []string {
		t.Helper()
		rows, err := ack.AckListDue(b.ctx, &outboxdriver.AckListDueParams{Limit: 100})
		if err != nil {
			t.Fatalf("AckListDue: %v", err)
		}
		var ids []string
		for _, r := range rows {
			ids = append(ids, r.EventID)
		}
		return ids
	}
	answer := func(id string, st outboxdriver.AckStatus, reason string) (bool, error) {
		t.Helper()
		tx := b.begin(t)
		defer tx.Rollback() //nolint:errcheck
		ok, err := ack.AckAnswer(b.ctx, &outboxdriver.AckAnswerParams{Tx: tx, EventID: id, Status: st, Reason: reason})
		if err == nil {
			if cerr := tx.Commit(); cerr != nil {
				t.Fatal(cerr)
			}
		}
		return ok, err
	}
	mark := func(fn func(*outboxdriver.AckMarkParams) (bool, error), id string, resends int, want bool) {
		t.Helper()
		got, err := fn(&outboxdriver.AckMarkParams{EventID: id, Resends: resends})
		if err != nil || got != want {
			t.Fatalf("mark %s at %d resends: %v, %v; want %v", id, resends, got, err, want)
		}
	}
	resent := func(p *outboxdriver.AckMarkParams) (bool, error) { return ack.AckMarkResent(b.ctx, p) }
	giveUp := func(p *outboxdriver.AckMarkParams) (bool, error) { return ack.AckMarkUnacknowledged(b.ctx, p) }

	if r := get(a.ID); r == nil || r.Status != outboxdriver.AckAwaiting || r.Deadline != time.Hour ||
		r.MaxResends != 1 || r.ResendBackoff != 1500*time.Millisecond || r.Resends != 0 || r.AnsweredAt != nil {
		t.Fatalf("ack row after insert: %+v", r)
	}
	if r := get(plain.ID); r != nil {
		t.Fatalf("an event inserted without AwaitAck has ack row %+v", r)
	}
	wantIDs(t, "due while pending", due(), nil)
	b.settle(t, eventIDs(a, answered, plain))
	wantIDs(t, "due before the deadline", due(), nil)

	if ok, err := answer(answered.ID, outboxdriver.AckAcknowledged, ""); !ok || err != nil {
		t.Fatalf("first answer: %v, %v", ok, err)
	}
	if ok, err := answer(answered.ID, outboxdriver.AckRejected, "late"); ok || err != nil {
		t.Fatalf("second answer: %v, %v; want a no-op", ok, err)
	}
	for _, id := range []string{plain.ID, uuid.NewString()} {
		if _, err := answer(id, outboxdriver.AckAcknowledged, ""); !errors.Is(err, outboxdriver.ErrAckNotFound) {
			t.Fatalf("answer for %s: %v, want ErrAckNotFound", id, err)
		}
	}
	if r := get(answered.ID); r.Status != outboxdriver.AckAcknowledged || r.Reason != "" || r.AnsweredAt == nil {
		t.Fatalf("answered ack: %+v", r)
	}

	h.Elapse(t, b.drv, 2*time.Hour)
	wantIDs(t, "due past the deadline", due(), eventIDs(a))
	mark(resent, a.ID, 0, true)
	mark(resent, a.ID, 0, false) // another relay's stale read loses
	wantIDs(t, "due right after a resend was decided", due(), nil)
	// A relay that decided the resend and crashed before making the event
	// pending: once the backoff passed, the event is due again.
	time.Sleep(1600 * time.Millisecond)
	wantIDs(t, "due after a crash between mark and retry", due(), eventIDs(a))
	mustN(t, "EventRetry", 1)(b.drv.EventRetry(b.ctx, &outboxdriver.EventRetryParams{IDs: eventIDs(a)}))
	wantIDs(t, "due while resent and pending", due(), nil)
	b.settle(t, eventIDs(a))
	time.Sleep(1600 * time.Millisecond)
	wantIDs(t, "due after the resend's backoff", due(), eventIDs(a))
	if r := get(a.ID); r.Resends != 1 || r.ResentAt == nil {
		t.Fatalf("after one resend: %+v", r)
	}
	mark(giveUp, a.ID, 0, false)
	mark(giveUp, a.ID, 1, true)
	wantIDs(t, "due once unacknowledged", due(), nil)

	stats, err := ack.AckStats(b.ctx, &outboxdriver.AckStatsParams{})
	if err != nil || stats.Awaiting != 0 || stats.Rejected != 0 || stats.Unacknowledged != 1 || !stats.OldestAwaiting.IsZero() {
		t.Fatalf("AckStats = %+v, %v", stats, err)
	}
	ids, err := ack.AckList(b.ctx, &outboxdriver.AckListParams{Status: outboxdriver.AckUnacknowledged, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "AckList(unacknowledged)", ids, eventIDs(a))

	mustN(t, "AckRearm", 1)(ack.AckRearm(b.ctx, &outboxdriver.AckRearmParams{IDs: eventIDs(a, answered, plain)}))
	if r := get(a.ID); r.Status != outboxdriver.AckAwaiting || r.Resends != 0 || r.ResentAt != nil {
		t.Fatalf("re-armed ack: %+v", r)
	}
	if ok, err := answer(a.ID, outboxdriver.AckRejected, "unknown insured person"); !ok || err != nil {
		t.Fatalf("rejection: %v, %v", ok, err)
	}
	stats, err = ack.AckStats(b.ctx, &outboxdriver.AckStatsParams{})
	if err != nil || stats.Rejected != 1 || stats.Awaiting != 0 || stats.Unacknowledged != 0 {
		t.Fatalf("AckStats after the rejection = %+v, %v", stats, err)
	}
	if r := get(a.ID); r.Reason != "unknown insured person" {
		t.Fatalf("rejection reason %q", r.Reason)
	}

	// Purge keeps what is not done (awaiting, unacknowledged), removes the
	// answered events, then their ack rows.
	waiting := ev("d", 4)
	waiting.AwaitAck = &policy
	b.insert(t, waiting)
	b.settle(t, eventIDs(waiting))
	h.Elapse(t, b.drv, 2*time.Hour)
	mustN(t, "EventPurge", 3)(b.drv.EventPurge(b.ctx, &outboxdriver.EventPurgeParams{Before: time.Now().Add(-time.Hour), Limit: 100}))
	if _, err := b.drv.EventGet(b.ctx, &outboxdriver.EventGetParams{ID: waiting.ID}); err != nil {
		t.Fatalf("an event awaiting its answer was purged: %v", err)
	}
	mustN(t, "AckPurge", 2)(ack.AckPurge(b.ctx, &outboxdriver.AckPurgeParams{Limit: 100}))
	if r := get(waiting.ID); r == nil || get(a.ID) != nil {
		t.Fatalf("after AckPurge: waiting %+v, purged a %+v", r, get(a.ID))
	}
}
