package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
		_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_cdc_state", "` + table + `_acks"`)
		_, _ = db.Exec(`DROP PUBLICATION IF EXISTS "` + drv.Publication() + `"`)
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
// be told to fail, standing in for a broker in driver tests (the
// conformance suite runs relay scenarios against real brokers).
type recorder struct {
	mu     sync.Mutex
	msgs   []*message.Message
	byID   map[string]int
	failFn func(*message.Message) error
}

func newRecorder() *recorder { return &recorder{byID: map[string]int{}} }

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	r.mu.Lock()
	fail := r.failFn
	r.mu.Unlock()
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

// runRelay runs a relay on the bundle's driver until the test ends.
func runRelay(t testing.TB, b *bundle, pub message.Publisher, cfg outbox.RelayConfig) (stop func()) {
	t.Helper()
	cfg.PollInterval = max(cfg.PollInterval, 20*time.Millisecond)
	return startRelay(t, b.drv, pub, cfg)
}

// startRelay runs a relay on drv until stop, or until the test ends.
func startRelay(t testing.TB, drv outboxdriver.Driver, pub message.Publisher, cfg outbox.RelayConfig) (stop func()) {
	t.Helper()
	r, err := outbox.NewRelay(drv, pub, cfg)
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
				t.Errorf("relay %s: %v", cfg.ID, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// insertBacklog inserts n events of payload cycling through keys keys, in
// transactions of 1000.
func insertBacklog(t testing.TB, bu *bundle, n, keys int, payload []byte) {
	t.Helper()
	var events []*outbox.Event
	for i := range n {
		events = append(events, &outbox.Event{Type: "t", Topic: "t", Key: fmt.Sprint(i % keys), Payload: payload})
	}
	for i := 0; i < n; i += 1000 {
		bu.insert(t, events[i:min(i+1000, n)]...)
	}
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

// TestOverlappingClaimsKeepFlowing drains a backlog whose keys all recur
// every 1000 events with two batches of 500 open at once: each claim made
// while the other batch is open steps over that batch's keys, and the next
// claim must start low enough to find the events it stepped over. A claim
// that starts too late finds only keys with earlier pending events, comes
// back empty, and the relay stalls until its once-a-second claim from the
// start (the regression this catches: about one batch a second).
func TestOverlappingClaimsKeepFlowing(t *testing.T) {
	t.Parallel()
	bu := setup(t)
	const n = 20000
	insertBacklog(t, bu, n, 1000, []byte("p"))
	pub := &countingPublisher{}
	var empty, claims atomic.Int64
	runRelay(t, bu, pub, outbox.RelayConfig{BatchSize: 500, Concurrency: 2, ClaimObserver: func(o outbox.ClaimOutcome) {
		if pub.n.Load() < n-1000 { // not yet the tail, where the last keys are legitimately held
			claims.Add(1)
			if o.Events == 0 && o.Err == nil {
				empty.Add(1)
			}
		}
	}})
	eventually(t, "backlog drained", func() bool { return pub.n.Load() >= n })
	if empty.Load() > 2 {
		t.Fatalf("%d of %d claims came back empty while thousands of events were pending", empty.Load(), claims.Load())
	}
}

// TestFewKeysClaimOneBatchAtATime drains a backlog of fewer keys than a
// batch holds with two batches allowed open: the first batch holds every
// key, so a claim beside it can only come back empty. The relay must notice
// and claim one batch at a time instead of repeating that claim (before,
// about one empty claim per batch, each stepping over the whole backlog:
// half the throughput of Concurrency 1).
func TestFewKeysClaimOneBatchAtATime(t *testing.T) {
	t.Parallel()
	bu := setup(t)
	const n, batch = 10000, 500
	insertBacklog(t, bu, n, 20, []byte("p"))
	pub := &countingPublisher{}
	var empty, claims atomic.Int64
	runRelay(t, bu, pub, outbox.RelayConfig{BatchSize: batch, Concurrency: 2, PollInterval: time.Second, ClaimObserver: func(o outbox.ClaimOutcome) {
		if pub.n.Load() < n-batch {
			claims.Add(1)
			if o.Events == 0 && o.Err == nil {
				empty.Add(1)
			}
		}
	}})
	eventually(t, "backlog drained", func() bool { return pub.n.Load() >= n })
	t.Logf("%d of %d claims came back empty", empty.Load(), claims.Load())
	if batches := int64(n / batch); empty.Load() > batches/2 {
		t.Fatalf("%d of %d claims came back empty for %d batches", empty.Load(), claims.Load(), batches)
	}
}

// hangingPublisher acknowledges at once, except events of key "slow",
// whose acknowledgment waits until release is closed.
type hangingPublisher struct {
	countingPublisher
	release   chan struct{}
	mu        sync.Mutex
	delivered map[string]bool // by key
}

func (p *hangingPublisher) PublishAsync(_ string, msg *message.Message) (func(context.Context) error, error) {
	key := msg.Metadata.Get(outbox.MetadataKey)
	return func(ctx context.Context) error {
		if key == "slow" {
			select {
			case <-p.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		p.mu.Lock()
		p.delivered[key] = true
		p.mu.Unlock()
		p.n.Add(1)
		return nil
	}, nil
}

func (p *hangingPublisher) has(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delivered[key]
}

// TestHungPublishOtherKeysFlow: while one event's publish hangs, its batch
// stays open; events of other keys committed meanwhile are claimed beside
// it and delivered, also after claims beside it came back empty (the relay
// then waits for a batch to close, but not longer than PollInterval).
func TestHungPublishOtherKeysFlow(t *testing.T) {
	t.Parallel()
	bu := setup(t)
	pub := &hangingPublisher{release: make(chan struct{}), delivered: map[string]bool{}}
	defer close(pub.release)
	bu.insert(t, ev("slow", 0), ev("a", 0), ev("a", 1))
	runRelay(t, bu, pub, outbox.RelayConfig{Concurrency: 2, PollInterval: 100 * time.Millisecond, PublishTimeout: 2 * time.Minute})
	eventually(t, "key a delivered", func() bool { return pub.has("a") })
	time.Sleep(time.Second) // claims beside the open batch find nothing meanwhile
	bu.insert(t, ev("b", 0))
	eventually(t, "key b delivered while slow/0 hangs", func() bool { return pub.has("b") })
	if pub.has("slow") {
		t.Fatal("slow/0 was acknowledged before its release")
	}
}
