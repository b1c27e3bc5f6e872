package sqlite_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// Driver-level tests: each method of outboxdriver.Driver called directly,
// with the relay out of the picture, so leases and fencing can be staged.

func (b *bundle) claim(t testing.TB, relay string, limit int, lease time.Duration) []*outboxdriver.EventRow {
	t.Helper()
	rows, err := b.drv.EventClaimBatch(context.Background(), &outboxdriver.EventClaimBatchParams{RelayID: relay, Limit: limit, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func (b *bundle) get(t testing.TB, id string) *outboxdriver.EventRow {
	t.Helper()
	r, err := b.drv.EventGet(context.Background(), &outboxdriver.EventGetParams{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func idsOf(rows []*outboxdriver.EventRow) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

func TestDriverClaim(t *testing.T) {
	t.Parallel()

	t.Run("limit, seq order and lease", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var events []*outbox.Event
		for i := range 5 {
			e := ev("", i)
			events = append(events, e)
			b.insert(t, e)
		}
		rows := b.claim(t, "r1", 3, time.Minute)
		if len(rows) != 3 {
			t.Fatalf("claimed %d, want 3", len(rows))
		}
		for i, r := range rows {
			if r.ID != events[i].ID || r.LockedBy != "r1" || r.LockedUntil == nil ||
				r.LockedUntil.Before(time.Now().Add(50*time.Second)) || string(r.Payload) != string(events[i].Payload) {
				t.Fatalf("row %d: %+v", i, r)
			}
			if i > 0 && r.Seq <= rows[i-1].Seq {
				t.Fatalf("not ordered by seq: %v", idsOf(rows))
			}
		}
		rest := b.claim(t, "r2", 10, time.Minute)
		if len(rest) != 2 || rest[0].ID != events[3].ID {
			t.Fatalf("second claim got %v", idsOf(rest))
		}
		if again := b.claim(t, "r3", 10, time.Minute); len(again) != 0 {
			t.Fatalf("leased events claimed again: %v", idsOf(again))
		}
	})

	t.Run("a leased event holds back later events of its key only", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		a1, a2, c1, n1 := ev("a", 1), ev("a", 2), ev("c", 1), ev("", 1)
		b.insert(t, a1)
		first := b.claim(t, "r1", 1, time.Minute)
		if len(first) != 1 || first[0].ID != a1.ID {
			t.Fatalf("first claim %v", idsOf(first))
		}
		b.insert(t, a2, c1, n1)
		got := b.claim(t, "r2", 10, time.Minute)
		if len(got) != 2 || got[0].ID != c1.ID || got[1].ID != n1.ID {
			t.Fatalf("claim while a1 leased: got %v, want [c1 n1]", idsOf(got))
		}
		// Once a1 is delivered, a2 becomes claimable.
		if n, err := b.drv.EventMarkDelivered(context.Background(), &outboxdriver.EventMarkDeliveredParams{RelayID: "r1", IDs: []string{a1.ID}}); err != nil || n != 1 {
			t.Fatalf("mark delivered: %d %v", n, err)
		}
		got = b.claim(t, "r2", 10, time.Minute)
		if len(got) != 1 || got[0].ID != a2.ID {
			t.Fatalf("after a1 delivered: got %v, want [a2]", idsOf(got))
		}
	})

	t.Run("delivery clears the last error of an earlier attempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := ev("k", 1)
		b.insert(t, e)
		b.claim(t, "r1", 10, time.Minute)
		ctx := context.Background()
		if _, err := b.drv.EventMarkFailed(ctx, &outboxdriver.EventMarkFailedParams{RelayID: "r1",
			Failures: []outboxdriver.FailedAttempt{{ID: e.ID, Error: "broker said no"}}}); err != nil {
			t.Fatal(err)
		}
		if rows := b.claim(t, "r2", 10, time.Minute); len(rows) != 1 {
			t.Fatalf("claimed %d after the failure, want 1", len(rows))
		}
		if n, err := b.drv.EventMarkDelivered(ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r2", IDs: []string{e.ID}}); err != nil || n != 1 {
			t.Fatalf("mark delivered: %d %v", n, err)
		}
		if r := b.get(t, e.ID); r.Status != outbox.StatusDelivered || r.LastError != "" || r.Attempts != 2 {
			t.Fatalf("delivered event: status %s, last_error %q, attempts %d; want delivered, no error, 2", r.Status, r.LastError, r.Attempts)
		}
	})

	t.Run("an event in backoff holds back its key; dead does not", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		a1, a2, c1, c2 := ev("a", 1), ev("a", 2), ev("c", 1), ev("c", 2)
		b.insert(t, a1, a2, c1, c2)
		rows := b.claim(t, "r1", 10, time.Minute)
		if len(rows) != 4 {
			t.Fatalf("claimed %d", len(rows))
		}
		n, err := b.drv.EventMarkFailed(context.Background(), &outboxdriver.EventMarkFailedParams{RelayID: "r1", Failures: []outboxdriver.FailedAttempt{
			{ID: a1.ID, Error: "broker said no", Delay: time.Hour},
			{ID: c1.ID, Error: "poison \xff", Dead: true},
		}})
		if err != nil || n != 2 {
			t.Fatalf("mark failed: %d %v", n, err)
		}
		if n, err := b.drv.EventRelease(context.Background(), &outboxdriver.EventReleaseParams{RelayID: "r1", IDs: []string{a2.ID, c2.ID}}); err != nil || n != 2 {
			t.Fatalf("release: %d %v", n, err)
		}
		ra1, rc1, ra2 := b.get(t, a1.ID), b.get(t, c1.ID), b.get(t, a2.ID)
		if ra1.Status != outbox.StatusPending || ra1.Attempts != 1 || ra1.LastError != "broker said no" || ra1.LockedBy != "" ||
			ra1.NextAttemptAt.Before(time.Now().Add(50*time.Minute)) {
			t.Fatalf("a1 after failure: %+v", ra1)
		}
		if rc1.Status != outbox.StatusDead || rc1.Attempts != 1 || rc1.LastError == "" {
			t.Fatalf("c1 after dead: %+v", rc1)
		}
		if ra2.Attempts != 0 || ra2.LockedBy != "" || ra2.LockedUntil != nil {
			t.Fatalf("released a2: %+v", ra2)
		}
		got := b.claim(t, "r2", 10, time.Minute)
		if len(got) != 1 || got[0].ID != c2.ID {
			t.Fatalf("claim: got %v, want [c2] (a1 in backoff holds a2; dead c1 does not hold c2)", idsOf(got))
		}
	})

	t.Run("an expired lease is taken over and the old relay is fenced", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := ev("k", 1)
		b.insert(t, e)
		if rows := b.claim(t, "old", 10, 30*time.Millisecond); len(rows) != 1 {
			t.Fatalf("claimed %d", len(rows))
		}
		time.Sleep(60 * time.Millisecond)
		rows := b.claim(t, "new", 10, time.Minute)
		if len(rows) != 1 || rows[0].ID != e.ID {
			t.Fatalf("takeover claimed %v", idsOf(rows))
		}
		ctx := context.Background()
		ids := []string{e.ID}
		if n, _ := b.drv.EventExtendLeases(ctx, &outboxdriver.EventExtendLeasesParams{RelayID: "old", IDs: ids, Lease: time.Hour}); n != 0 {
			t.Fatalf("old relay extended %d", n)
		}
		if n, _ := b.drv.EventMarkDelivered(ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "old", IDs: ids}); n != 0 {
			t.Fatalf("old relay marked delivered %d", n)
		}
		if n, _ := b.drv.EventMarkFailed(ctx, &outboxdriver.EventMarkFailedParams{RelayID: "old", Failures: []outboxdriver.FailedAttempt{{ID: e.ID, Error: "x", Dead: true}}}); n != 0 {
			t.Fatalf("old relay marked failed %d", n)
		}
		if n, _ := b.drv.EventRelease(ctx, &outboxdriver.EventReleaseParams{RelayID: "old", IDs: ids}); n != 0 {
			t.Fatalf("old relay released %d", n)
		}
		before := b.get(t, e.ID).LockedUntil
		if n, err := b.drv.EventExtendLeases(ctx, &outboxdriver.EventExtendLeasesParams{RelayID: "new", IDs: ids, Lease: time.Hour}); err != nil || n != 1 {
			t.Fatalf("new relay extend: %d %v", n, err)
		}
		if after := b.get(t, e.ID).LockedUntil; after == nil || !after.After(*before) {
			t.Fatalf("lease not extended: %v -> %v", before, after)
		}
		if n, err := b.drv.EventMarkDelivered(ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "new", IDs: ids}); err != nil || n != 1 {
			t.Fatalf("new relay mark: %d %v", n, err)
		}
		got := b.get(t, e.ID)
		if got.Status != outbox.StatusDelivered || got.DeliveredAt == nil || got.Attempts != 1 || got.LockedBy != "" {
			t.Fatalf("after delivery: %+v", got)
		}
	})

	t.Run("cancelled claims leave no transaction open", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for i := range 50 {
			b.insert(t, ev("", i))
		}
		for i := range 20 {
			ctx, cancel := context.WithCancel(context.Background())
			if i%2 == 0 {
				cancel() // before the claim starts
			} else {
				go cancel() // racing the claim
			}
			_, _ = b.drv.EventClaimBatch(ctx, &outboxdriver.EventClaimBatchParams{RelayID: "r", Limit: 1, Lease: time.Minute})
			cancel()
		}
		// A leaked transaction would hold the write lock: this insert would
		// time out with SQLITE_BUSY after 200ms.
		conn, err := b.db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(context.Background(), "PRAGMA busy_timeout = 200"); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			tx, err := conn.BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.ob.Insert(context.Background(), tx, ev("", 99)); err != nil {
				t.Fatalf("insert after cancelled claims: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatalf("commit after cancelled claims: %v", err)
			}
		}
	})

	t.Run("empty id lists are no-ops", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := context.Background()
		for name, f := range map[string]func() (int64, error){
			"extend": func() (int64, error) {
				return b.drv.EventExtendLeases(ctx, &outboxdriver.EventExtendLeasesParams{RelayID: "r"})
			},
			"mark": func() (int64, error) {
				return b.drv.EventMarkDelivered(ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r"})
			},
			"failed": func() (int64, error) {
				return b.drv.EventMarkFailed(ctx, &outboxdriver.EventMarkFailedParams{RelayID: "r"})
			},
			"release": func() (int64, error) { return b.drv.EventRelease(ctx, &outboxdriver.EventReleaseParams{RelayID: "r"}) },
			"retry":   func() (int64, error) { return b.drv.EventRetry(ctx, &outboxdriver.EventRetryParams{}) },
		} {
			if n, err := f(); n != 0 || err != nil {
				t.Fatalf("%s: %d %v", name, n, err)
			}
		}
	})
}

func TestDriverAdmin(t *testing.T) {
	t.Parallel()

	t.Run("get round-trips every field", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := &outbox.Event{Type: "t", Topic: "top", Key: "k", Payload: []byte{}, Headers: map[string]string{"h": "v"}}
		b.insert(t, e)
		r := b.get(t, e.ID)
		if r.Seq < 1 || r.Type != "t" || r.Topic != "top" || r.Key != "k" || r.Payload == nil || len(r.Payload) != 0 ||
			string(r.Headers) != `{"h":"v"}` || r.Status != outbox.StatusPending || r.Attempts != 0 ||
			!r.CreatedAt.Equal(e.CreatedAt) || r.NextAttemptAt.IsZero() || r.DeliveredAt != nil || r.LockedUntil != nil {
			t.Fatalf("row: %+v (created %v)", r, e.CreatedAt)
		}
		_, err := b.drv.EventGet(context.Background(), &outboxdriver.EventGetParams{ID: "0194a1c2-0000-7000-8000-00000000dead"})
		if !errors.Is(err, outboxdriver.ErrNotFound) {
			t.Fatalf("missing id: %v", err)
		}
	})

	t.Run("retry by id skips leased pending events", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e1, e2 := ev("", 1), ev("", 2)
		b.insert(t, e1, e2)
		b.claim(t, "r1", 10, time.Minute)
		ctx := context.Background()
		if _, err := b.drv.EventMarkDelivered(ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r1", IDs: []string{e1.ID}}); err != nil {
			t.Fatal(err)
		}
		n, err := b.drv.EventRetry(ctx, &outboxdriver.EventRetryParams{IDs: []string{e1.ID, e2.ID}})
		if err != nil || n != 1 {
			t.Fatalf("retry: %d %v (want only the delivered one)", n, err)
		}
		if r := b.get(t, e1.ID); r.Status != outbox.StatusPending || r.Attempts != 0 {
			t.Fatalf("retried: %+v", r)
		}
		if r := b.get(t, e2.ID); r.LockedBy != "r1" {
			t.Fatalf("leased event was touched: %+v", r)
		}
	})

	t.Run("retry dead narrows by type", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e1, e2 := ev("", 1), ev("", 2)
		e2.Type = "other"
		b.insert(t, e1, e2)
		b.claim(t, "r1", 10, time.Minute)
		ctx := context.Background()
		if _, err := b.drv.EventMarkFailed(ctx, &outboxdriver.EventMarkFailedParams{RelayID: "r1", Failures: []outboxdriver.FailedAttempt{
			{ID: e1.ID, Error: "x", Dead: true}, {ID: e2.ID, Error: "y", Dead: true},
		}}); err != nil {
			t.Fatal(err)
		}
		st, err := b.drv.EventStats(ctx, &outboxdriver.EventStatsParams{})
		if err != nil || st.Dead != 2 || st.Pending != 0 || !st.OldestPending.IsZero() {
			t.Fatalf("stats: %+v %v", st, err)
		}
		if n, err := b.drv.EventRetry(ctx, &outboxdriver.EventRetryParams{AllDead: true, Type: "other"}); err != nil || n != 1 {
			t.Fatalf("retry other: %d %v", n, err)
		}
		if n, err := b.drv.EventRetry(ctx, &outboxdriver.EventRetryParams{AllDead: true}); err != nil || n != 1 {
			t.Fatalf("retry all: %d %v", n, err)
		}
		st, _ = b.drv.EventStats(ctx, &outboxdriver.EventStatsParams{})
		if st.Dead != 0 || st.Pending != 2 || st.OldestPending.IsZero() || time.Since(st.Now).Abs() > time.Minute {
			t.Fatalf("stats after retry: %+v", st)
		}
	})

	t.Run("purge respects Before and Limit", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var ids []string
		for i := range 5 {
			e := ev("", i)
			b.insert(t, e)
			ids = append(ids, e.ID)
		}
		b.claim(t, "r1", 10, time.Minute)
		ctx := context.Background()
		if _, err := b.drv.EventMarkDelivered(ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r1", IDs: ids[:4]}); err != nil {
			t.Fatal(err)
		}
		st, _ := b.drv.EventStats(ctx, &outboxdriver.EventStatsParams{})
		if st.DeliveredLastMinute != 4 {
			t.Fatalf("delivered last minute = %d", st.DeliveredLastMinute)
		}
		if n, _ := b.drv.EventPurge(ctx, &outboxdriver.EventPurgeParams{Before: time.Now().Add(-time.Hour), Limit: 10}); n != 0 {
			t.Fatalf("purged %d recent events", n)
		}
		if n, _ := b.drv.EventPurge(ctx, &outboxdriver.EventPurgeParams{Before: time.Now().Add(time.Second), Limit: 3}); n != 3 {
			t.Fatalf("purged %d, want 3 (limit)", n)
		}
		if n, _ := b.drv.EventPurge(ctx, &outboxdriver.EventPurgeParams{Before: time.Now().Add(time.Second), Limit: 3}); n != 1 {
			t.Fatalf("purged %d, want the last delivered one", n)
		}
		rows, err := b.drv.EventList(ctx, &outboxdriver.EventListParams{Limit: 10})
		if err != nil || len(rows) != 1 || rows[0].ID != ids[4] {
			t.Fatalf("left after purge: %v %v", idsOf(rows), err)
		}
	})
}
