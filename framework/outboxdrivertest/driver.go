package outboxdrivertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

func testMigrate(t *testing.T, h Harness) {
	t.Parallel()
	drv := h.NewDriver(t)
	ctx := t.Context()
	st, err := drv.MigrateStatus(ctx, &outboxdriver.MigrateStatusParams{})
	if err != nil || len(st.Pending) == 0 || len(st.Applied) != 0 {
		t.Fatalf("fresh table: status %+v, %v; want every version pending", st, err)
	}
	if _, err := drv.EventStats(ctx, &outboxdriver.EventStatsParams{}); !errors.Is(err, outboxdriver.ErrNotMigrated) {
		t.Fatalf("EventStats before migrating: want ErrNotMigrated, got %v", err)
	}
	versions := append([]int(nil), st.Pending...)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() { errs <- drv.MigrateUp(ctx, &outboxdriver.MigrateUpParams{}) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent MigrateUp: %v", err)
		}
	}
	if err := drv.MigrateUp(ctx, &outboxdriver.MigrateUpParams{}); err != nil {
		t.Fatalf("MigrateUp again: %v", err)
	}
	st, err = drv.MigrateStatus(ctx, &outboxdriver.MigrateStatusParams{})
	if err != nil || len(st.Pending) != 0 || fmt.Sprint(st.Applied) != fmt.Sprint(versions) {
		t.Fatalf("after MigrateUp: status %+v, %v; want %v applied", st, err, versions)
	}
	if s, err := drv.EventStats(ctx, &outboxdriver.EventStatsParams{}); err != nil || s.Pending != 0 {
		t.Fatalf("EventStats after migrating: %+v, %v", s, err)
	}
}

func testInsert(t *testing.T, h Harness) {
	t.Parallel()

	t.Run("commit stores every field", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		// Hostile but valid content: NUL and invalid UTF-8 in the payload
		// (bytes), markup and escapes in headers and key.
		e := &outbox.Event{Type: "invoice.issued", Topic: "invoices", Key: "k-é-<b>",
			Payload: []byte("\x00\xff{\"a\":1}\x1b[31m"), Headers: map[string]string{"h": "v\x1b]0;x\x07", "html": "<script>"}}
		// The core adds the trace context of ctx as a header.
		const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		tx := b.begin(t)
		if err := b.ob.Insert(outbox.ContextWithTraceparent(b.ctx, traceparent, ""), tx, e); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if e.ID == "" || e.CreatedAt.IsZero() {
			t.Fatalf("Insert did not fill id and created_at: %+v", e)
		}
		r := b.get(t, e.ID)
		var headers map[string]string
		if err := json.Unmarshal(r.Headers, &headers); err != nil {
			t.Fatalf("stored headers %q: %v", r.Headers, err)
		}
		if r.Seq <= 0 || r.ID != e.ID || r.Type != e.Type || r.Topic != e.Topic || r.Key != e.Key ||
			string(r.Payload) != string(e.Payload) || headers["h"] != e.Headers["h"] || headers["html"] != "<script>" ||
			headers["traceparent"] != traceparent ||
			r.Status != outboxdriver.StatusPending || r.Attempts != 0 || r.LastError != "" ||
			!r.CreatedAt.Equal(e.CreatedAt) || r.NextAttemptAt.IsZero() || r.DeliveredAt != nil ||
			r.LockedBy != "" || r.LockedUntil != nil {
			t.Fatalf("stored row %+v, headers %v\ninserted %+v", r, headers, e)
		}
		empty := &outbox.Event{Type: "t", Topic: "t"}
		b.insert(t, empty)
		if r := b.get(t, empty.ID); r.Payload == nil || len(r.Payload) != 0 || r.Key != "" {
			t.Fatalf("empty payload and key stored as %+v", r)
		}
	})

	t.Run("rollback stores nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		e := ev("k", 1)
		if err := b.insertOpen(t, e).Rollback(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.drv.EventGet(b.ctx, &outboxdriver.EventGetParams{ID: e.ID}); !errors.Is(err, outboxdriver.ErrNotFound) {
			t.Fatalf("rolled-back event: %v", err)
		}
	})

	t.Run("same id and content is idempotent, a reused id is an error", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		const id = "0194a1c2-0000-7000-8000-000000000001"
		first, again, inCall := ev("k", 1), ev("k", 1), ev("k", 1)
		first.ID, again.ID, inCall.ID = id, id, id
		b.insert(t, first)
		b.insert(t, again)
		b.insert(t, ev("k", 4), inCall) // in one call with another event
		if s := b.stats(t); s.Pending != 2 {
			t.Fatalf("pending = %d, want 2", s.Pending)
		}
		reused := ev("k", 2)
		reused.ID = id
		tx := b.begin(t)
		defer tx.Rollback() //nolint:errcheck
		if err := b.ob.Insert(b.ctx, tx, reused); !errors.Is(err, outbox.ErrDuplicateEvent) {
			t.Fatalf("Insert of a reused id with another payload: %v, want ErrDuplicateEvent", err)
		}
		if r := b.get(t, id); string(r.Payload) != `{"i":1}` {
			t.Fatalf("the first insert's payload was replaced: %s", r.Payload)
		}
	})

	t.Run("many events in one call", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		var events []*outbox.Event
		for i := range 2500 {
			events = append(events, ev(fmt.Sprint(i%7), i))
		}
		b.insert(t, events...)
		got := b.list(t, outboxdriver.EventListParams{Limit: 3000})
		wantIDs(t, "stored events in seq order", got, eventIDs(events...))
	})

	t.Run("invalid events leave the transaction usable", func(t *testing.T) {
		t.Parallel()
		b := setup(t, h)
		ob, err := outbox.New(b.drv, outbox.Config{MaxPayloadBytes: 10})
		if err != nil {
			t.Fatal(err)
		}
		tx := b.begin(t)
		defer tx.Rollback() //nolint:errcheck
		for name, c := range map[string]struct {
			e     *outbox.Event
			field string
			want  error
		}{
			"empty type":      {&outbox.Event{Topic: "t"}, "Type", outbox.ErrInvalidEvent},
			"empty topic":     {&outbox.Event{Type: "x"}, "Topic", outbox.ErrInvalidEvent},
			"bad id":          {&outbox.Event{ID: "nope", Type: "x", Topic: "t"}, "ID", outbox.ErrInvalidEvent},
			"reserved header": {&outbox.Event{Type: "x", Topic: "t", Headers: map[string]string{"outbox_key": "v"}}, "Headers", outbox.ErrInvalidEvent},
			"too large":       {&outbox.Event{Type: "x", Topic: "t", Payload: make([]byte, 11)}, "Payload", outbox.ErrEventTooLarge},
		} {
			err := ob.Insert(b.ctx, tx, ev("ok", 1), c.e)
			var ee *outbox.EventError
			if !errors.As(err, &ee) || !errors.Is(err, c.want) || ee.Field != c.field || ee.Index != 1 {
				t.Fatalf("%s: got %v", name, err)
			}
		}
		// Nothing of the refused calls was written, and the transaction
		// still works.
		ok := ev("ok", 2)
		if err := ob.Insert(b.ctx, tx, ok); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		wantIDs(t, "stored", b.list(t, outboxdriver.EventListParams{}), []string{ok.ID})
	})
}

func testGet(t *testing.T, h Harness) {
	t.Parallel()
	b := setup(t, h)
	_, err := b.drv.EventGet(b.ctx, &outboxdriver.EventGetParams{ID: "0194a1c2-0000-7000-8000-00000000dead"})
	if !errors.Is(err, outboxdriver.ErrNotFound) {
		t.Fatalf("missing id: want ErrNotFound, got %v", err)
	}
}

func testList(t *testing.T, h Harness) {
	t.Parallel()
	b := setup(t, h)
	var events []*outbox.Event
	for i := range 10 {
		e := ev(fmt.Sprint("k", i%2), i)
		if i == 9 {
			e.Type = "special"
		}
		events = append(events, e)
	}
	b.insert(t, events...)
	b.settle(t, eventIDs(events[:3]...), outboxdriver.FailedAttempt{ID: events[3].ID, Error: "x", Dead: true})

	wantIDs(t, "all", b.list(t, outboxdriver.EventListParams{}), eventIDs(events...))
	wantIDs(t, "delivered", b.list(t, outboxdriver.EventListParams{Status: outboxdriver.StatusDelivered}), eventIDs(events[:3]...))
	wantIDs(t, "dead", b.list(t, outboxdriver.EventListParams{Status: outboxdriver.StatusDead}), eventIDs(events[3]))
	wantIDs(t, "pending k1", b.list(t, outboxdriver.EventListParams{Status: outboxdriver.StatusPending, Key: "k1"}),
		eventIDs(events[5], events[7], events[9]))
	wantIDs(t, "type", b.list(t, outboxdriver.EventListParams{Type: "special"}), eventIDs(events[9]))
	wantIDs(t, "type and key", b.list(t, outboxdriver.EventListParams{Type: "test.happened", Key: "k1"}),
		eventIDs(events[1], events[3], events[5], events[7]))
	wantIDs(t, "since the future", b.list(t, outboxdriver.EventListParams{Since: time.Now().Add(time.Hour)}), nil)
	wantIDs(t, "until the past", b.list(t, outboxdriver.EventListParams{Until: time.Now().Add(-time.Hour)}), nil)
	wantIDs(t, "since and until", b.list(t, outboxdriver.EventListParams{Since: events[0].CreatedAt, Until: time.Now().Add(time.Hour)}),
		eventIDs(events...))

	// Cursor paging: pages of 4 after the last seq of the previous page.
	var paged []string
	var after int64
	for range 10 {
		rows, err := b.drv.EventList(b.ctx, &outboxdriver.EventListParams{AfterSeq: after, Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		if len(rows) > 4 {
			t.Fatalf("page of %d rows with Limit 4", len(rows))
		}
		paged = append(paged, rowIDs(rows)...)
		after = rows[len(rows)-1].Seq
	}
	wantIDs(t, "paged", paged, eventIDs(events...))

	dead, err := b.drv.EventList(b.ctx, &outboxdriver.EventListParams{Status: outboxdriver.StatusDead, Limit: 10})
	if err != nil || len(dead) != 1 || dead[0].LastError != "x" || dead[0].Attempts != 1 {
		t.Fatalf("dead row %+v, %v", dead, err)
	}
}

func testStats(t *testing.T, h Harness) {
	t.Parallel()
	b := setup(t, h)
	if s := b.stats(t); s.Pending != 0 || s.Dead != 0 || !s.OldestPending.IsZero() || s.DeliveredLastMinute != 0 ||
		time.Since(s.Now).Abs() > time.Minute {
		t.Fatalf("empty table: %+v", s)
	}
	var events []*outbox.Event
	for i := range 6 {
		events = append(events, ev("", i))
		b.insert(t, events[i]) // one commit each: distinct created_at order
	}
	b.settle(t, eventIDs(events[:2]...), outboxdriver.FailedAttempt{ID: events[2].ID, Error: "x", Dead: true})
	s := b.stats(t)
	if s.Pending != 3 || s.Dead != 1 || s.DeliveredLastMinute != 2 || !s.OldestPending.Equal(events[3].CreatedAt) {
		t.Fatalf("stats %+v; want 3 pending (oldest created %v), 1 dead, 2 delivered", s, events[3].CreatedAt)
	}
	h.Elapse(t, b.drv, 2*time.Minute)
	if s := b.stats(t); s.DeliveredLastMinute != 0 || s.Pending != 3 {
		t.Fatalf("two minutes later: %+v", s)
	}
}

func testPurge(t *testing.T, h Harness) {
	t.Parallel()
	b := setup(t, h)
	var events []*outbox.Event
	for i := range 7 {
		events = append(events, ev("", i))
	}
	b.insert(t, events...)
	b.settle(t, eventIDs(events[:5]...), outboxdriver.FailedAttempt{ID: events[5].ID, Error: "x", Dead: true})
	purge := func(before time.Time, limit int) (int64, error) {
		return b.drv.EventPurge(b.ctx, &outboxdriver.EventPurgeParams{Before: before, Limit: limit})
	}
	mustN(t, "purge before an hour ago", 0)(purge(time.Now().Add(-time.Hour), 100))
	h.Elapse(t, b.drv, time.Hour)
	soon := time.Now().Add(-30 * time.Minute)
	mustN(t, "purge, limit 3", 3)(purge(soon, 3))
	mustN(t, "purge the rest", 2)(purge(soon, 3))
	mustN(t, "purge again", 0)(purge(soon, 3))
	// Pending and dead events are never purged.
	wantIDs(t, "left after purge", b.list(t, outboxdriver.EventListParams{}), eventIDs(events[5:]...))
}

func testRetry(t *testing.T, h Harness) {
	t.Parallel()
	b := setup(t, h)
	dead1, dead2, delivered, pending := ev("a", 1), ev("b", 2), ev("c", 3), ev("d", 4)
	dead2.Type = "other.type"
	b.insert(t, dead1, dead2, delivered, pending)
	b.settle(t, []string{delivered.ID},
		outboxdriver.FailedAttempt{ID: dead1.ID, Error: "x", Dead: true},
		outboxdriver.FailedAttempt{ID: dead2.ID, Error: "y", Dead: true})

	retry := func(p outboxdriver.EventRetryParams) (int64, error) { return b.drv.EventRetry(b.ctx, &p) }
	mustN(t, "retry dead of another type", 0)(retry(outboxdriver.EventRetryParams{AllDead: true, Type: "none"}))
	mustN(t, "retry dead of other.type", 1)(retry(outboxdriver.EventRetryParams{AllDead: true, Type: "other.type"}))
	if r := b.get(t, dead1.ID); r.Status != outboxdriver.StatusDead {
		t.Fatalf("retry by type touched another type: %+v", r)
	}
	mustN(t, "retry all dead", 1)(retry(outboxdriver.EventRetryParams{AllDead: true}))
	mustN(t, "retry by id (a delivered one and an unknown one)", 1)(retry(outboxdriver.EventRetryParams{
		IDs: []string{delivered.ID, "0194a1c2-0000-7000-8000-00000000dead"}}))
	mustN(t, "retry no ids", 0)(retry(outboxdriver.EventRetryParams{}))
	for _, id := range eventIDs(dead1, dead2, delivered) {
		if r := b.get(t, id); r.Status != outboxdriver.StatusPending || r.Attempts != 0 || r.LockedBy != "" ||
			r.NextAttemptAt.After(time.Now().Add(time.Minute)) {
			t.Fatalf("not retried: %+v", r)
		}
	}
	got := claimerOf(t, b).claim(t, "r", 10, 0)
	wantIDs(t, "claim after retry", rowIDs(got.rows), eventIDs(dead1, dead2, delivered, pending))
}

// testRetryResend: EventRetryParams.Resend counts each resend in the header
// outbox_resend and keeps the other headers; a retry without it leaves the
// count alone. A stored count that is not a small decimal (a hostile row)
// restarts at 1, headers that are not an object are left as they are, and
// neither fails the statement for the other events.
func testRetryResend(t *testing.T, h Harness) {
	t.Parallel()
	b := setup(t, h)
	a, hostile, notObject := ev("a", 1), ev("b", 2), ev("c", 3)
	a.Headers = map[string]string{"traceparent": "00-x", "note": "caf\u00e9 \"q\""}
	b.insert(t, a, hostile, notObject)
	for id, raw := range map[string]string{
		hostile.ID:   `{"outbox_resend": "9999999999", "k": "v"}`,
		notObject.ID: `["outbox_resend"]`,
	} {
		// Ids and values are the test's own constants: inlined, as the
		// dialects' placeholders differ.
		if _, err := b.drv.DB().ExecContext(b.ctx, "UPDATE "+b.drv.Table()+" SET headers = '"+raw+"' WHERE id = '"+id+"'"); err != nil {
			t.Fatalf("store hostile headers: %v", err)
		}
	}
	header := func(id string) map[string]string {
		t.Helper()
		m := map[string]string{}
		if r := b.get(t, id); json.Unmarshal(r.Headers, &m) != nil {
			return map[string]string{"raw": string(r.Headers)}
		}
		return m
	}
	all := eventIDs(a, hostile, notObject)
	retry := func(resend bool) {
		t.Helper()
		mustN(t, fmt.Sprintf("retry (resend %v)", resend), 3)(b.drv.EventRetry(b.ctx, &outboxdriver.EventRetryParams{IDs: all, Resend: resend}))
	}
	retry(true)
	if got := header(a.ID); got["outbox_resend"] != "1" || got["traceparent"] != "00-x" || got["note"] != a.Headers["note"] {
		t.Fatalf("first resend: headers %v", got)
	}
	retry(true)
	retry(false)
	if got := header(a.ID)["outbox_resend"]; got != "2" {
		t.Fatalf("after two resends and a plain retry: outbox_resend %q, want 2", got)
	}
	if got := header(hostile.ID); got["outbox_resend"] != "2" || got["k"] != "v" {
		t.Fatalf("hostile count after two resends: %v, want outbox_resend 2 (restarted) and k kept", got)
	}
	if got := header(notObject.ID); got["raw"] == "" || !strings.Contains(got["raw"], "outbox_resend") || strings.Contains(got["raw"], "{") {
		t.Fatalf("headers that are not an object changed: %v", got)
	}
}
