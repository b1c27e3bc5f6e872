package outboxdrivertest

import (
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// testClaim runs the scenarios both claim protocols share.
func testClaim(t *testing.T, h Harness) {
	t.Parallel()

	t.Run("rows in seq order up to the limit", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		var events []*outbox.Event
		for i := range 5 {
			events = append(events, ev("", i))
		}
		b.insert(t, events...)
		c := claimerOf(t, b)
		first := c.claim(t, "r1", 3, 0)
		wantIDs(t, "first claim", rowIDs(first.rows), eventIDs(events[:3]...))
		for i, r := range first.rows {
			e := events[i]
			if r.Type != e.Type || r.Topic != e.Topic || string(r.Payload) != string(e.Payload) || r.Attempts != 0 ||
				!r.CreatedAt.Equal(e.CreatedAt) || (i > 0 && r.Seq <= first.rows[i-1].Seq) {
				t.Fatalf("claimed row %d: %+v", i, r)
			}
		}
		wantIDs(t, "second claim", rowIDs(c.claim(t, "r2", 10, 0).rows), eventIDs(events[3:]...))
		wantIDs(t, "third claim", rowIDs(c.claim(t, "r3", 10, 0).rows), nil)
	})

	t.Run("open batches never share a key", func(t *testing.T) {
		// While one batch is open (a relay publishing it), a second claim
		// (another relay, or the same relay's next batch) takes the next
		// events whose keys are free, in seq order.
		t.Parallel()
		b := setup(t, h)
		var evs []*outbox.Event
		for i := range 4 {
			for _, k := range []string{"a", "b", "c", "d"} {
				evs = append(evs, ev(k, i))
			}
		}
		b.insert(t, evs...)
		c := claimerOf(t, b)
		first := c.claim(t, "r1", 2, 0)
		wantIDs(t, "first claim (a/0 b/0)", rowIDs(first.rows), eventIDs(evs[0], evs[1]))
		second := c.claim(t, "r2", 4, 0)
		wantIDs(t, "second claim (c/0 d/0 c/1 d/1)", rowIDs(second.rows), eventIDs(evs[2], evs[3], evs[6], evs[7]))
		first.finish(t, rowIDs(first.rows), nil)
		third := c.claim(t, "r3", 2, 0)
		wantIDs(t, "third claim (a/1 b/1)", rowIDs(third.rows), eventIDs(evs[4], evs[5]))
	})

	t.Run("outcomes", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		ok, retry, dead, untouched := ev("a", 0), ev("b", 0), ev("c", 0), ev("d", 0)
		b.insert(t, ok, retry, dead, untouched)
		batch := claimerOf(t, b).claim(t, "r1", 10, 0)
		wantIDs(t, "claim", rowIDs(batch.rows), eventIDs(ok, retry, dead, untouched))
		// Hostile error text: invalid UTF-8, NUL, terminal escapes.
		batch.finish(t, []string{ok.ID}, []outboxdriver.FailedAttempt{
			{ID: retry.ID, Error: "broker said no", Delay: time.Hour},
			{ID: dead.ID, Error: "poison \xff\x00 \x1b[2J", Dead: true},
		})
		if r := b.get(t, ok.ID); r.Status != outboxdriver.StatusDelivered || r.Attempts != 1 || r.DeliveredAt == nil ||
			r.LastError != "" || r.LockedBy != "" {
			t.Fatalf("delivered event %+v", r)
		}
		r := b.get(t, retry.ID)
		if r.Status != outboxdriver.StatusPending || r.Attempts != 1 || r.LastError != "broker said no" || r.LockedBy != "" ||
			r.NextAttemptAt.Before(time.Now().Add(50*time.Minute)) || r.NextAttemptAt.After(time.Now().Add(70*time.Minute)) {
			t.Fatalf("failed event %+v: want pending, 1 attempt, its error, next attempt in an hour", r)
		}
		if r := b.get(t, dead.ID); r.Status != outboxdriver.StatusDead || r.Attempts != 1 || !strings.HasPrefix(r.LastError, "poison ") {
			t.Fatalf("dead event %+v", r)
		}
		if r := b.get(t, untouched.ID); r.Status != outboxdriver.StatusPending || r.Attempts != 0 || r.LockedBy != "" || r.LastError != "" {
			t.Fatalf("event in neither list %+v", r)
		}
		wantIDs(t, "claim after finish", rowIDs(claimerOf(t, b).claim(t, "r2", 10, 0).rows), eventIDs(untouched))
	})

	t.Run("an event in backoff holds back its key, a dead one does not", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		a1, a2, c1, c2 := ev("a", 1), ev("a", 2), ev("c", 1), ev("c", 2)
		b.insert(t, a1, a2, c1, c2)
		b.settle(t, nil,
			outboxdriver.FailedAttempt{ID: a1.ID, Error: "later", Delay: time.Hour},
			outboxdriver.FailedAttempt{ID: c1.ID, Error: "poison", Dead: true})
		c := claimerOf(t, b)
		held := c.claim(t, "r1", 10, 0)
		wantIDs(t, "claim during a1's backoff", rowIDs(held.rows), eventIDs(c2))
		held.abort(t)
		h.Elapse(t, b.drv, 2*time.Hour)
		wantIDs(t, "claim after the backoff", rowIDs(c.claim(t, "r2", 10, 0).rows), eventIDs(a1, a2, c2))
	})

	t.Run("abort leaves events pending", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		e1, e2 := ev("a", 1), ev("", 2)
		b.insert(t, e1, e2)
		c := claimerOf(t, b)
		batch := c.claim(t, "r1", 10, 0)
		batch.abort(t)
		for _, id := range eventIDs(e1, e2) {
			if r := b.get(t, id); r.Status != outboxdriver.StatusPending || r.Attempts != 0 || r.LockedBy != "" || r.LockedUntil != nil {
				t.Fatalf("after abort: %+v", r)
			}
		}
		wantIDs(t, "claim after abort", rowIDs(c.claim(t, "r2", 10, 0).rows), eventIDs(e1, e2))
	})

	t.Run("a rolled-back insert is never claimed", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		if err := b.insertOpen(t, ev("k", 1)).Rollback(); err != nil {
			t.Fatal(err)
		}
		later := ev("k", 2)
		b.insert(t, later)
		wantIDs(t, "claim", rowIDs(claimerOf(t, b).claim(t, "r1", 10, 0).rows), eventIDs(later))
	})

	t.Run("an uncommitted insert is not claimed until it commits", func(t *testing.T) {
		t.Parallel()
		if h.SingleWriter {
			t.Skip("one writer at a time: a claim waits for the open insert")
		}
		b := setup(t, h)
		open := ev("k", 1)
		tx := b.insertOpen(t, open)
		c := claimerOf(t, b)
		batch := c.claim(t, "r1", 10, 0)
		wantIDs(t, "claim during the open insert", rowIDs(batch.rows), nil)
		batch.abort(t)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		wantIDs(t, "claim after the commit", rowIDs(c.claim(t, "r2", 10, 0).rows), eventIDs(open))
	})

	t.Run("events committed out of seq order are not skipped", func(t *testing.T) {
		// No offset or high-water mark: an event with a lower seq that
		// commits after later ones were claimed and delivered is claimed.
		t.Parallel()
		if h.SingleWriter {
			t.Skip("one writer at a time: seq order is commit order")
		}
		b := setup(t, h)
		early := ev("a", 1)
		slow := b.insertOpen(t, early) // takes the lower seq
		late := ev("b", 1)
		b.insert(t, late)
		c := claimerOf(t, b)
		batch := c.claim(t, "r1", 10, 0)
		wantIDs(t, "claim before the slow commit", rowIDs(batch.rows), eventIDs(late))
		batch.finish(t, rowIDs(batch.rows), nil)
		if err := slow.Commit(); err != nil {
			t.Fatal(err)
		}
		got := c.claim(t, "r2", 10, 0)
		wantIDs(t, "claim after the slow commit", rowIDs(got.rows), eventIDs(early))
		if got.rows[0].Seq >= b.get(t, late.ID).Seq {
			t.Fatalf("the slow event's seq %d is not below the late one's: the test did not commit out of order", got.rows[0].Seq)
		}
	})
}
