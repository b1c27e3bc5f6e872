package conformance

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// RunUnreadableRow proves the last clause of C7 on h: a stored row the relay
// cannot turn into a message (headers that are not a JSON object of strings,
// an empty topic — written with raw SQL behind the driver's back, as a
// manual fix or a foreign writer would) becomes dead with last_error
// "unreadable row: ..." after exactly one attempt, never reaches the broker
// and never loops, while the next event of its key and every other event
// flow. It needs the Dialect registered for h.Database.Name (built in for
// "postgres" and "mysql"); without one the test is skipped.
func RunUnreadableRow(t *testing.T, h Harness) {
	if h.Database.NewDriver == nil || h.Broker.Open == nil || h.Database.DriverName == "" {
		t.Fatal("conformance: Harness needs Database.DriverName, Database.NewDriver and Broker.Open")
	}
	outboxtest.RequireService(t, append(slices.Clone(h.Database.Services), h.Broker.Services...)...)
	d := dialectOf(t, h.Database)
	e := setup(t, h)

	badHeaders := e.event("bad", 0)
	follower := e.event("bad", 1) // same key: must not be held back by a dead row
	badTopic := e.event("", 2)
	var others []*outbox.Event
	for i := range 10 {
		others = append(others, e.event("ok", 10+i))
	}
	e.insert(t, append([]*outbox.Event{badHeaders, follower, badTopic}, others...)...)
	for _, c := range []struct{ id, column, value string }{
		{badHeaders.ID, "headers", `{"retries": 3, "ok": true}`},
		{badTopic.ID, "topic", ""},
	} {
		if err := d.SetColumn(e.db, e.table, c.id, c.column, c.value); err != nil {
			t.Fatalf("corrupt %s of %s: %v", c.column, c.id, err)
		}
	}

	var mu sync.Mutex
	attempts := map[string]int{}
	e.relay(nil, e.broker.NewPublisher(t, ""), outbox.RelayConfig{
		MaxAttempts: 5, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Observer: func(o outbox.Outcome) {
			mu.Lock()
			attempts[o.EventID]++
			mu.Unlock()
		},
	})
	bad := []string{badHeaders.ID, badTopic.ID}
	eventually(t, "the follower of the unreadable row and the other events delivered", hangGuard, func() bool {
		return e.got.hasAll(append(ids(others), follower.ID))
	})
	// Operators see the rows through List (Get is checked separately below).
	deadRows := func() map[string]*outbox.StoredEvent {
		page, err := e.ob.List(t.Context(), outbox.ListFilter{Status: outbox.StatusDead})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*outbox.StoredEvent{}
		for _, ev := range page.Events {
			out[ev.ID] = ev
		}
		return out
	}
	eventually(t, "both unreadable rows dead", hangGuard, func() bool {
		d := deadRows()
		return d[badHeaders.ID] != nil && d[badTopic.ID] != nil
	})
	// Give a looping relay time to show itself: several poll intervals.
	time.Sleep(300 * time.Millisecond)
	dead := deadRows()
	for _, id := range bad {
		st := dead[id]
		if !strings.HasPrefix(st.LastError, "unreadable row") {
			t.Errorf("event %s: last_error %q, want it to start with \"unreadable row\"", id, st.LastError)
		}
		if st.Attempts > 1 {
			t.Errorf("event %s: %d attempts recorded for a row that cannot be read, want at most 1", id, st.Attempts)
		}
		mu.Lock()
		n := attempts[id]
		mu.Unlock()
		if n != 1 {
			t.Errorf("event %s: the relay tried an unreadable row %d times, want exactly once", id, n)
		}
		if c := e.got.count(id); c != 0 {
			t.Errorf("event %s: an unreadable row reached the broker %d times", id, c)
		}
		t.Logf("unreadable row %s: status=%s attempts=%d last_error=%q", id, st.Status, st.Attempts, st.LastError)
	}
	if len(dead) != len(bad) {
		t.Errorf("%d dead events listed, want the %d unreadable rows only", len(dead), len(bad))
	}
	if s := e.stats(t); s.Dead != 2 || s.Pending != 0 {
		t.Errorf("stats: dead=%d pending=%d, want 2 and 0", s.Dead, s.Pending)
	}
	// C6: an operator looking the dead row up by id sees it and its reason,
	// as List shows it.
	t.Run("get_shows_the_dead_row", func(t *testing.T) {
		for _, id := range bad {
			st, err := e.ob.Get(t.Context(), id)
			if err != nil {
				t.Errorf("Get(%s) of a dead unreadable row: %v (List shows it: status=%s last_error=%q)", id, err, dead[id].Status, dead[id].LastError)
				continue
			}
			if st.Status != outbox.StatusDead || !strings.HasPrefix(st.LastError, "unreadable row") {
				t.Errorf("Get(%s): status=%s last_error=%q", id, st.Status, st.LastError)
			}
		}
	})
}
