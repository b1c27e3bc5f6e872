package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

type bundle struct {
	db    *sql.DB
	table string
	drv   *postgres.Driver
	ob    *outbox.Outbox
}

func openDB(t testing.TB) *sql.DB {
	t.Helper()
	outboxtest.RequireService(t, outboxtest.Postgres)
	db, err := sql.Open("postgres", outboxtest.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(40)
	t.Cleanup(func() { db.Close() })
	return db
}

// setup returns a migrated outbox on a fresh table that is dropped afterwards.
func setup(t testing.TB) *bundle {
	t.Helper()
	db := openDB(t)
	table := outboxtest.UniqueName("ob")
	drv, err := postgres.New(db, postgres.Config{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := drv.MigrateUp(ctx, &outboxdriver.MigrateUpParams{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations"`)
	})
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{db: db, table: table, drv: drv, ob: ob}
}

// insert writes events in one committed transaction.
func (b *bundle) insert(t testing.TB, events ...*outbox.Event) {
	t.Helper()
	tx, err := b.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ob.Insert(context.Background(), tx, events...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func ev(key string, i int) *outbox.Event {
	return &outbox.Event{Type: "test.happened", Topic: "test", Key: key, Payload: fmt.Appendf(nil, `{"i":%d}`, i)}
}

// recorder is a Watermill publisher that records what it receives and can
// be told to fail or hang, standing in for a broker in driver tests (the
// conformance suite runs the same scenarios against real brokers).
type recorder struct {
	mu     sync.Mutex
	msgs   []*message.Message
	byID   map[string]int
	failFn func(*message.Message) error
	hang   chan struct{} // when non-nil, Publish blocks until it is closed
	calls  atomic.Int32  // Publish calls started
}

func newRecorder() *recorder { return &recorder{byID: map[string]int{}} }

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	r.calls.Add(1)
	r.mu.Lock()
	hang, fail := r.hang, r.failFn
	r.mu.Unlock()
	if hang != nil {
		<-hang
	}
	for _, m := range msgs {
		if fail != nil {
			if err := fail(m); err != nil {
				return err
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.msgs = append(r.msgs, m)
		r.byID[m.UUID]++
	}
	return nil
}

func (r *recorder) Close() error { return nil }

func (r *recorder) count() (total, distinct int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs), len(r.byID)
}

func (r *recorder) snapshot() []*message.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*message.Message(nil), r.msgs...)
}

// runRelay runs a relay until the test ends.
func runRelay(t testing.TB, b *bundle, pub message.Publisher, cfg outbox.RelayConfig) (stop func()) {
	t.Helper()
	cfg.PollInterval = max(cfg.PollInterval, 20*time.Millisecond)
	r, err := outbox.NewRelay(b.drv, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond until it holds or the deadline passes. The deadline
// is a hang guard, not a performance assertion.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bundle) stats(t testing.TB) *outbox.Stats {
	t.Helper()
	s, err := b.ob.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	db, _ := sql.Open("postgres", "postgres://invalid")
	for name, cfg := range map[string]postgres.Config{
		"table with quote":   {Table: `out"box`},
		"table with space":   {Table: "out box"},
		"table too long":     {Table: "t234567890123456789012345678901234567890123456789"},
		"schema with dot":    {Schema: "a.b"},
		"table starts digit": {Table: "1outbox"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := postgres.New(db, cfg)
			if !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Fatalf("want ErrInvalidConfig, got %v", err)
			}
		})
	}
	t.Run("nil db", func(t *testing.T) {
		t.Parallel()
		if _, err := postgres.New(nil, postgres.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Fatalf("want ErrInvalidConfig, got %v", err)
		}
	})
}

func TestMigrate(t *testing.T) {
	t.Parallel()

	t.Run("idempotent and concurrent", func(t *testing.T) {
		t.Parallel()
		db := openDB(t)
		table := outboxtest.UniqueName("mig")
		schema := outboxtest.UniqueName("sch")
		t.Cleanup(func() { _, _ = db.Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`) })
		drv, err := postgres.New(db, postgres.Config{Schema: schema, Table: table})
		if err != nil {
			t.Fatal(err)
		}
		st, err := drv.MigrateStatus(context.Background(), &outboxdriver.MigrateStatusParams{})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Pending) == 0 || len(st.Applied) != 0 {
			t.Fatalf("fresh table: status %+v", st)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() { errs <- drv.MigrateUp(context.Background(), &outboxdriver.MigrateUpParams{}) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		st, err = drv.MigrateStatus(context.Background(), &outboxdriver.MigrateStatusParams{})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Pending) != 0 || len(st.Applied) == 0 {
			t.Fatalf("after migrate: status %+v", st)
		}
		if err := drv.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("not migrated is a clear error", func(t *testing.T) {
		t.Parallel()
		db := openDB(t)
		drv, err := postgres.New(db, postgres.Config{Table: outboxtest.UniqueName("none")})
		if err != nil {
			t.Fatal(err)
		}
		if err := drv.Ping(context.Background()); !errors.Is(err, outbox.ErrNotMigrated) {
			t.Fatalf("want ErrNotMigrated, got %v", err)
		}
		ob, _ := outbox.New(drv, outbox.Config{})
		if _, err := ob.Stats(context.Background()); !errors.Is(err, outbox.ErrNotMigrated) {
			t.Fatalf("want ErrNotMigrated, got %v", err)
		}
	})
}

func TestInsert(t *testing.T) {
	t.Parallel()

	t.Run("commit stores the event with id and created_at", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e, err := outbox.NewJSONEvent("invoice.issued", "invoices", "inv-1", map[string]any{"amount": "12.50"})
		if err != nil {
			t.Fatal(err)
		}
		ctx := outbox.ContextWithTraceparent(context.Background(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "")
		tx, _ := b.db.Begin()
		if err := b.ob.Insert(ctx, tx, e); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if e.ID == "" || e.CreatedAt.IsZero() {
			t.Fatalf("id/created_at not filled: %+v", e)
		}
		got, err := b.ob.Get(context.Background(), e.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != outbox.StatusPending || string(got.Payload) != `{"amount":"12.50"}` || got.Key != "inv-1" ||
			got.Headers["traceparent"] == "" || got.Headers["content-type"] != "application/json" {
			t.Fatalf("stored event: %+v", got)
		}
	})

	t.Run("rollback stores nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tx, _ := b.db.Begin()
		if err := b.ob.Insert(context.Background(), tx, ev("k", 1)); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback()
		if s := b.stats(t); s.Pending != 0 {
			t.Fatalf("pending = %d after rollback", s.Pending)
		}
	})

	t.Run("invalid events are rejected and the tx stays usable", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ob, _ := outbox.New(b.drv, outbox.Config{MaxPayloadBytes: 10})
		tx, _ := b.db.Begin()
		defer tx.Rollback()
		cases := map[string]struct {
			e     *outbox.Event
			field string
			want  error
		}{
			"empty type":      {&outbox.Event{Topic: "t"}, "Type", outbox.ErrInvalidEvent},
			"empty topic":     {&outbox.Event{Type: "x"}, "Topic", outbox.ErrInvalidEvent},
			"bad id":          {&outbox.Event{ID: "nope", Type: "x", Topic: "t"}, "ID", outbox.ErrInvalidEvent},
			"reserved header": {&outbox.Event{Type: "x", Topic: "t", Headers: map[string]string{"outbox_key": "v"}}, "Headers", outbox.ErrInvalidEvent},
			"too large":       {&outbox.Event{Type: "x", Topic: "t", Payload: make([]byte, 11)}, "Payload", outbox.ErrEventTooLarge},
		}
		for name, c := range cases {
			err := ob.Insert(context.Background(), tx, ev("ok", 1), c.e)
			var ee *outbox.EventError
			if !errors.As(err, &ee) || !errors.Is(err, c.want) || ee.Field != c.field || ee.Index != 1 {
				t.Fatalf("%s: got %v", name, err)
			}
		}
		// Nothing of the rejected calls was written, and the tx still works.
		if err := ob.Insert(context.Background(), tx, ev("ok", 2)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if s := b.stats(t); s.Pending != 1 {
			t.Fatalf("pending = %d, want 1", s.Pending)
		}
		if err := ob.Insert(context.Background(), nil, ev("k", 1)); !errors.Is(err, outbox.ErrInvalidEvent) {
			t.Fatalf("nil tx: %v", err)
		}
	})

	t.Run("same id and content twice is idempotent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e1, e2 := ev("k", 1), ev("k", 1)
		e1.ID = "0194a1c2-0000-7000-8000-000000000001"
		e2.ID = e1.ID
		b.insert(t, e1)
		b.insert(t, e2)
		if s := b.stats(t); s.Pending != 1 {
			t.Fatalf("pending = %d, want 1", s.Pending)
		}
	})

	t.Run("batch insert of many events", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var events []*outbox.Event
		for i := range 2500 {
			events = append(events, ev(fmt.Sprint(i%7), i))
		}
		b.insert(t, events...)
		if s := b.stats(t); s.Pending != 2500 {
			t.Fatalf("pending = %d, want 2500", s.Pending)
		}
	})
}

func TestRelay(t *testing.T) {
	t.Parallel()

	t.Run("commit publishes, rollback publishes nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := newRecorder()
		runRelay(t, b, rec, outbox.RelayConfig{})
		committed := ev("a", 1)
		b.insert(t, committed)
		tx, _ := b.db.Begin()
		rolledBack := ev("a", 2)
		if err := b.ob.Insert(context.Background(), tx, rolledBack); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback()
		eventually(t, "delivery", func() bool { n, _ := rec.count(); return n >= 1 })
		// A later committed event proves the relay went past the rolled-back one.
		b.insert(t, ev("a", 3))
		eventually(t, "second delivery", func() bool { n, _ := rec.count(); return n >= 2 })
		msgs := rec.snapshot()
		for _, m := range msgs {
			if m.UUID == rolledBack.ID {
				t.Fatal("rolled-back event was published")
			}
		}
		m := msgs[0]
		if m.UUID != committed.ID || m.Metadata.Get(outbox.MetadataEventType) != "test.happened" ||
			m.Metadata.Get(outbox.MetadataKey) != "a" || string(m.Payload) != `{"i":1}` {
			t.Fatalf("published message: uuid=%s md=%v payload=%s", m.UUID, m.Metadata, m.Payload)
		}
		got, _ := b.ob.Get(context.Background(), committed.ID)
		if got.Status != outbox.StatusDelivered || got.DeliveredAt == nil || got.Attempts != 1 {
			t.Fatalf("stored after delivery: %+v", got)
		}
	})

	t.Run("writers committing out of id order lose nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := newRecorder()
		runRelay(t, b, rec, outbox.RelayConfig{BatchSize: 50})
		const writers, perWriter = 20, 25
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					tx, err := b.db.Begin()
					if err != nil {
						t.Error(err)
						return
					}
					if err := b.ob.Insert(context.Background(), tx, ev(fmt.Sprintf("w%d", w), i)); err != nil {
						t.Error(err)
						return
					}
					// Hold the transaction open so that later ids commit first.
					time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
					if err := tx.Commit(); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		eventually(t, "all delivered", func() bool { _, d := rec.count(); return d == writers*perWriter })
		eventually(t, "all marked", func() bool { return b.stats(t).Pending == 0 })
	})

	t.Run("poison event goes dead while other keys flow", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := newRecorder()
		rec.failFn = func(m *message.Message) error {
			if m.Metadata.Get(outbox.MetadataKey) == "poison" {
				return errors.New("broker rejected: schema mismatch")
			}
			return nil
		}
		runRelay(t, b, rec, outbox.RelayConfig{MaxAttempts: 3, BackoffMin: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond})
		poison := ev("poison", 0)
		b.insert(t, poison)
		after := ev("poison", 1) // same key: held back until the first is dead
		b.insert(t, after)
		for i := range 20 {
			b.insert(t, ev(fmt.Sprintf("ok%d", i), i))
		}
		eventually(t, "poison dead", func() bool {
			got, err := b.ob.Get(context.Background(), poison.ID)
			return err == nil && got.Status == outbox.StatusDead
		})
		got, _ := b.ob.Get(context.Background(), poison.ID)
		if got.Attempts != 3 || got.LastError == "" {
			t.Fatalf("dead event: attempts=%d last_error=%q", got.Attempts, got.LastError)
		}
		// The other keys all flowed.
		eventually(t, "other keys delivered", func() bool { _, d := rec.count(); return d >= 20 })
		if s := b.stats(t); s.Dead < 1 {
			t.Fatalf("stats dead = %d", s.Dead)
		}
		page, err := b.ob.List(context.Background(), outbox.ListFilter{Status: outbox.StatusDead})
		if err != nil || len(page.Events) == 0 || page.Events[0].ID != poison.ID {
			t.Fatalf("list dead: %v %+v", err, page)
		}

		// The broker recovers; Retry resends the dead events.
		rec.mu.Lock()
		rec.failFn = nil
		rec.mu.Unlock()
		n, err := b.ob.RetryDead(context.Background(), "")
		if err != nil || n < 1 {
			t.Fatalf("retry dead: n=%d err=%v", n, err)
		}
		eventually(t, "retried delivered", func() bool {
			g, _ := b.ob.Get(context.Background(), poison.ID)
			a, _ := b.ob.Get(context.Background(), after.ID)
			return g.Status == outbox.StatusDelivered && a.Status == outbox.StatusDelivered
		})
	})

	t.Run("failing event holds back only its own key, in order", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := newRecorder()
		var failures atomic.Int32
		rec.failFn = func(m *message.Message) error {
			if m.Metadata.Get(outbox.MetadataKey) == "slow" && failures.Add(1) <= 3 {
				return errors.New("transient")
			}
			return nil
		}
		runRelay(t, b, rec, outbox.RelayConfig{MaxAttempts: 10, BackoffMin: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
		var slow []*outbox.Event
		for i := range 5 {
			e := ev("slow", i)
			slow = append(slow, e)
			b.insert(t, e)
			b.insert(t, ev("fast", i))
		}
		eventually(t, "all delivered", func() bool { _, d := rec.count(); return d == 10 })
		var order []string
		for _, m := range rec.snapshot() {
			if m.Metadata.Get(outbox.MetadataKey) == "slow" {
				order = append(order, m.UUID)
			}
		}
		for i, e := range slow {
			if order[i] != e.ID {
				t.Fatalf("key order broken at %d: got %v", i, order)
			}
		}
	})

	for name, relays := range map[string][]outbox.RelayConfig{
		"three relays":                 {{BatchSize: 37}, {BatchSize: 37}, {BatchSize: 37}},
		"one relay, 4 batches at once": {{BatchSize: 37, Concurrency: 4}},
	} {
		t.Run("per-key order with "+name, func(t *testing.T) {
			t.Parallel()
			testPerKeyOrder(t, relays)
		})
	}

	t.Run("insert does not wait for a relay stuck on the broker", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := newRecorder()
		rec.hang = make(chan struct{})
		defer close(rec.hang)
		runRelay(t, b, rec, outbox.RelayConfig{PublishTimeout: time.Minute, ShutdownTimeout: time.Second})
		for i := range 50 {
			b.insert(t, ev("stuck", i))
		}
		b.insert(t, ev("other", 0))
		// Wait until the relay holds a claim (it is now blocked in Publish).
		eventually(t, "relay claimed", func() bool { return rec.calls.Load() > 0 })
		conn, err := b.db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// A lock wait would hit this timeout and fail the insert.
		if _, err := conn.ExecContext(context.Background(), "SET lock_timeout = '500ms'"); err != nil {
			t.Fatal(err)
		}
		var worst time.Duration
		for i := range 20 {
			start := time.Now()
			tx, err := conn.BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.ob.Insert(context.Background(), tx, ev("stuck", 100+i)); err != nil {
				t.Fatalf("insert while relay stuck: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatalf("commit while relay stuck: %v", err)
			}
			worst = max(worst, time.Since(start))
		}
		t.Logf("worst insert+commit latency while the relay is stuck: %s", worst)
	})

	t.Run("graceful shutdown releases unattempted events", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := newRecorder()
		rec.hang = make(chan struct{})
		stop := runRelay(t, b, rec, outbox.RelayConfig{BatchSize: 10, ShutdownTimeout: 200 * time.Millisecond, PublishTimeout: time.Minute})
		for i := range 10 {
			b.insert(t, ev("one-key", i))
		}
		eventually(t, "relay claimed", func() bool { return rec.calls.Load() > 0 })
		stop()
		close(rec.hang)
		p, err := b.ob.List(context.Background(), outbox.ListFilter{Status: outbox.StatusPending})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			if e.LockedBy != "" || e.Attempts != 0 {
				t.Fatalf("after shutdown event %s still leased by %q (attempts %d)", e.ID, e.LockedBy, e.Attempts)
			}
		}
		// A new relay picks everything up.
		rec2 := newRecorder()
		runRelay(t, b, rec2, outbox.RelayConfig{})
		eventually(t, "redelivered", func() bool { _, d := rec2.count(); return d == 10 })
	})
}

func TestAdmin(t *testing.T) {
	t.Parallel()

	t.Run("list filters and paginates", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for i := range 25 {
			e := ev(fmt.Sprintf("k%d", i%2), i)
			if i%5 == 0 {
				e.Type = "other.type"
			}
			b.insert(t, e)
		}
		var all []*outbox.StoredEvent
		f := outbox.ListFilter{Limit: 10}
		for {
			page, err := b.ob.List(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page.Events...)
			if page.Next == 0 {
				break
			}
			f.After = page.Next
		}
		if len(all) != 25 {
			t.Fatalf("paginated %d events, want 25", len(all))
		}
		page, _ := b.ob.List(context.Background(), outbox.ListFilter{Type: "other.type"})
		if len(page.Events) != 5 {
			t.Fatalf("type filter: %d", len(page.Events))
		}
		page, _ = b.ob.List(context.Background(), outbox.ListFilter{Key: "k1", Type: "test.happened"})
		if len(page.Events) != 10 {
			t.Fatalf("key+type filter: %d", len(page.Events))
		}
		page, _ = b.ob.List(context.Background(), outbox.ListFilter{Until: time.Now().Add(-time.Hour)})
		if len(page.Events) != 0 {
			t.Fatalf("until filter: %d", len(page.Events))
		}
		page, _ = b.ob.List(context.Background(), outbox.ListFilter{Since: time.Now().Add(-time.Hour), Status: outbox.StatusPending})
		if len(page.Events) != 25 {
			t.Fatalf("since filter: %d", len(page.Events))
		}
		if _, err := b.ob.List(context.Background(), outbox.ListFilter{Status: "sent"}); err == nil {
			t.Fatal("unknown status accepted")
		}
	})

	t.Run("purge keeps undelivered and retry resends delivered", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		rec := newRecorder()
		stop := runRelay(t, b, rec, outbox.RelayConfig{})
		var delivered []*outbox.Event
		for i := range 30 {
			e := ev("", i)
			delivered = append(delivered, e)
			b.insert(t, e)
		}
		eventually(t, "delivered", func() bool { _, d := rec.count(); return d == 30 })
		eventually(t, "marked", func() bool { return b.stats(t).Pending == 0 })
		stop()
		b.insert(t, ev("", 99)) // pending: must survive purge
		n, err := b.ob.Retry(context.Background(), delivered[0].ID)
		if err != nil || n != 1 {
			t.Fatalf("retry delivered: %d %v", n, err)
		}
		var progress []int64
		purged, err := b.ob.Purge(context.Background(), 0, outbox.PurgeOptions{BatchSize: 7, Progress: func(n int64) { progress = append(progress, n) }})
		if err != nil {
			t.Fatal(err)
		}
		if purged != 29 || len(progress) != 5 {
			t.Fatalf("purged %d in %d batches, want 29 in 5", purged, len(progress))
		}
		if s := b.stats(t); s.Pending != 2 || s.OldestPendingAge <= 0 {
			t.Fatalf("after purge: %+v", s)
		}
		if _, err := b.ob.Get(context.Background(), delivered[1].ID); !errors.Is(err, outbox.ErrNotFound) {
			t.Fatalf("purged event still there: %v", err)
		}
		if _, err := b.ob.Retry(context.Background(), "not-a-uuid"); err == nil {
			t.Fatal("retry accepted a bad id")
		}
	})
}

// testPerKeyOrder inserts 40 keys x 25 events from concurrent writers while
// the given relays run, and checks that first deliveries follow commit order.
func testPerKeyOrder(t *testing.T, relays []outbox.RelayConfig) {
	b := setup(t)
	rec := newRecorder()
	for _, cfg := range relays {
		runRelay(t, b, rec, cfg)
	}
	const keys, perKey = 40, 25
	want := map[string][]string{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for k := range keys {
		wg.Go(func() {
			key := fmt.Sprintf("key-%d", k)
			for i := range perKey {
				e := ev(key, i)
				b.insert(t, e)
				mu.Lock()
				want[key] = append(want[key], e.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	eventually(t, "all delivered", func() bool { _, d := rec.count(); return d == keys*perKey })
	got := map[string][]string{}
	for _, m := range rec.snapshot() {
		k := m.Metadata.Get(outbox.MetadataKey)
		got[k] = append(got[k], m.UUID)
	}
	for k, ids := range want {
		// Duplicates are allowed (at-least-once) but first deliveries
		// must follow commit order.
		var firsts []string
		seen := map[string]bool{}
		for _, id := range got[k] {
			if !seen[id] {
				seen[id] = true
				firsts = append(firsts, id)
			}
		}
		if fmt.Sprint(firsts) != fmt.Sprint(ids) {
			t.Fatalf("key %s: order broken\n got %v\nwant %v", k, firsts, ids)
		}
	}
}
