// Package conformance is outboxkit's delivery-contract test suite. It proves
// every line of the contract (C1 atomic, C2 no loss, C3 bounded duplicates
// with stable ids, C4 per-key order, C5 failure isolation, C6 visible state,
// C7 bad input) against one database × broker combination described by a
// Harness, with real processes, real crashes (SIGKILL) and real network cuts
// (package outboxtest/tcpproxy).
//
// A driver or broker author runs it from a test:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Harness{
//			Name:     "postgres_nats",
//			Database: conformance.Postgres(),
//			Broker:   conformance.NATS(),
//		})
//	}
//
// The SIGKILL test re-executes the test binary (os.Args[0]) with
// -test.run narrowed to the calling test and an environment switch; Run
// notices the switch and runs a relay instead of the tests. Call Run from a
// plain test function (not from TestMain or an init hook), so that the
// re-executed binary reaches the same Run call.
//
// With testing.Short() the suite uses smaller event counts.
package conformance

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// Run runs the whole conformance suite against h as parallel subtests of t,
// grouped by contract line (t.Name()/C1/..., C2/..., ...).
func Run(t *testing.T, h Harness) {
	t.Helper()
	if runChildIfAsked(t, h) {
		return
	}
	cellStart := time.Now()
	t.Cleanup(func() { recordCell(t, h, cellStart) })
	outboxtest.RequireService(t, append(slices.Clone(h.Database.Services), h.Broker.Services...)...)
	if h.Database.Require != nil {
		h.Database.Require(t)
	}
	if h.Database.NewDriver == nil || h.Broker.Open == nil || h.Database.DriverName == "" {
		t.Fatal("conformance: Harness needs Database.DriverName, Database.NewDriver and Broker.Open")
	}
	cellTest := t.Name()
	groups := []struct {
		name  string
		tests []namedTest
	}{
		{"C1", c1Tests()},
		{"C2", c2Tests(cellTest)},
		{"C3", c3Tests()},
		{"C4", c4Tests()},
		{"C5", c5Tests()},
		{"C6", c6Tests()},
		{"C7", c7Tests()},
		{"C8", c8Tests(cellTest)},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, nt := range g.tests {
				t.Run(nt.name, func(t *testing.T) {
					t.Parallel()
					start := time.Now()
					t.Cleanup(func() { recordTest(t, h, g.name, nt.name, start) })
					nt.fn(t, h)
				})
			}
		})
	}
}

type namedTest struct {
	name string
	fn   func(t *testing.T, h Harness)
}

// scale picks the event count for the current mode.
func scale(short, full int) int {
	if testing.Short() {
		return short
	}
	return full
}

// env is one test's world: a fresh outbox table, a fresh broker topic and a
// collector draining everything the broker stored on it.
type env struct {
	t      *testing.T
	h      Harness
	db     *sql.DB
	table  string
	drv    outboxdriver.Driver
	ob     *outbox.Outbox
	id     string
	broker BrokerInstance
	got    *collector
}

func openDB(t testing.TB, h Harness, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(h.Database.DriverName, dsn)
	if err != nil {
		t.Fatalf("open %s: %v", h.Database.Name, err)
	}
	db.SetMaxOpenConns(40)
	t.Cleanup(func() { db.Close() })
	return db
}

func newDriver(t testing.TB, h Harness, db *sql.DB, table string) outboxdriver.Driver {
	t.Helper()
	return newDriverAt(t, h, db, h.Database.DSN, table)
}

// newDriverAt is newDriver for a db opened with dsn (NewDriverAt gets it).
func newDriverAt(t testing.TB, h Harness, db *sql.DB, dsn, table string) outboxdriver.Driver {
	t.Helper()
	newDrv := h.Database.NewDriver
	if h.Database.NewDriverAt != nil {
		newDrv = func(db *sql.DB, table string) (outboxdriver.Driver, error) {
			return h.Database.NewDriverAt(db, dsn, table)
		}
	}
	drv, err := newDrv(db, table)
	if err != nil {
		t.Fatalf("new %s driver: %v", h.Database.Name, err)
	}
	return drv
}

func setup(t *testing.T, h Harness) *env {
	t.Helper()
	e := &env{t: t, h: h, table: outboxtest.UniqueName("conf"), id: outboxtest.UniqueName("conf")}
	e.db = openDB(t, h, h.Database.DSN)
	e.drv = newDriver(t, h, e.db, e.table)
	if err := e.drv.MigrateUp(context.Background(), &outboxdriver.MigrateUpParams{}); err != nil {
		t.Fatalf("migrate %s: %v", e.table, err)
	}
	if h.Database.AfterMigrate != nil {
		if err := h.Database.AfterMigrate(e.drv); err != nil {
			t.Fatalf("after migrating %s: %v", e.table, err)
		}
	}
	if h.Database.DropTable != nil {
		t.Cleanup(func() {
			if err := h.Database.DropTable(e.db, e.table); err != nil {
				t.Logf("drop %s: %v", e.table, err)
			}
		})
	}
	ob, err := outbox.New(e.drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.ob = ob
	e.broker = h.Broker.Open(t, e.id)
	e.got = collect(t, e.broker.Consume(t))
	return e
}

// event returns a new event on the test's topic.
func (e *env) event(key string, i int) *outbox.Event {
	return &outbox.Event{
		Type: "conformance.happened", Topic: e.broker.Topic(), Key: key,
		Payload: fmt.Appendf(nil, `{"key":%q,"i":%d}`, key, i),
	}
}

// insert writes events in one committed transaction.
func (e *env) insert(t testing.TB, events ...*outbox.Event) {
	t.Helper()
	if err := e.tryInsert(events...); err != nil {
		t.Fatal(err)
	}
}

func (e *env) tryInsert(events ...*outbox.Event) error {
	tx, err := e.db.Begin()
	if err != nil {
		return err
	}
	if err := e.ob.Insert(context.Background(), tx, events...); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// relay runs an in-process relay on drv (the test's driver when nil) until
// the test ends or stop is called.
func (e *env) relay(drv outboxdriver.Driver, pub message.Publisher, cfg outbox.RelayConfig) (stop func()) {
	e.t.Helper()
	if drv == nil {
		drv = e.drv
	}
	cfg.PollInterval = max(cfg.PollInterval, 20*time.Millisecond)
	cfg.Publish = cmp.Or(cfg.Publish, e.h.Publish)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, e.h.Concurrency)
	if cfg.Logger == nil {
		// Kept, and shown only when the test fails: why a relay did not
		// claim or publish is otherwise invisible. Registered before the
		// relay's stop, so it runs after it: nothing logs into a finished
		// test.
		var buf lockedBuffer
		cfg.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
		e.t.Cleanup(func() {
			if e.t.Failed() {
				e.t.Logf("log of relay %q:\n%s", cfg.ID, buf.String())
			}
		})
	}
	r, err := outbox.NewRelay(drv, pub, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("relay: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *env) stats(t testing.TB) *outbox.Stats {
	t.Helper()
	s, err := e.ob.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) get(t testing.TB, id string) *outbox.StoredEvent {
	t.Helper()
	s, err := e.ob.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return s
}

// delivered reports whether id is recorded as delivered: its row says
// delivered or, with Database.DeletesDelivered, the row is gone. It fails
// the test on any other read error.
func (e *env) delivered(t testing.TB, id string) (bool, *outbox.StoredEvent) {
	t.Helper()
	s, err := e.ob.Get(context.Background(), id)
	if e.h.Database.DeletesDelivered {
		if errors.Is(err, outbox.ErrNotFound) {
			return true, nil
		}
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		return false, s
	}
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return s.Status == outbox.StatusDelivered, s
}

// waitAllDelivered waits until the broker stored every id (when it is
// readable from this process) and the table has nothing pending.
func (e *env) waitAllDelivered(t testing.TB, ids []string, timeout time.Duration) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d events on the broker", len(ids)), timeout, func() bool { return e.got.hasAll(ids) })
	eventually(t, "no pending event in the table", timeout, func() bool { return e.stats(t).Pending == 0 })
}

func ids(events []*outbox.Event) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.ID
	}
	return out
}

// eventually polls cond until it holds or timeout passes. The timeout is a
// hang guard, never a performance assertion.
func eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// hangGuard is the default eventually timeout.
const hangGuard = 90 * time.Second

// collector keeps everything a Consume channel delivered.
type collector struct {
	mu   sync.Mutex
	msgs []Received
	byID map[string]int
}

func collect(t testing.TB, ch <-chan Received) *collector {
	c := &collector{byID: map[string]int{}}
	go func() {
		for r := range ch {
			c.mu.Lock()
			c.msgs = append(c.msgs, r)
			c.byID[r.UUID]++
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id]
}

func (c *collector) totals() (total, distinct int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs), len(c.byID)
}

func (c *collector) hasAll(ids []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if c.byID[id] == 0 {
			return false
		}
	}
	return true
}

func (c *collector) snapshot() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// tap wraps a relay's publisher: before may fail or hold a message, and
// every acknowledged message is appended to a shared log in ack order.
type tap struct {
	inner  message.Publisher
	before func(*message.Message) error
	log    *ackLog
}

type ackLog struct {
	mu   sync.Mutex
	acks []ack
}

type ack struct{ id, key string }

func (a *ackLog) add(msgs []*message.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range msgs {
		a.acks = append(a.acks, ack{m.UUID, m.Metadata.Get(outbox.MetadataKey)})
	}
}

func (a *ackLog) snapshot() []ack {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.acks)
}

func (p *tap) Publish(topic string, msgs ...*message.Message) error {
	if p.before != nil {
		for _, m := range msgs {
			if err := p.before(m); err != nil {
				return err
			}
		}
	}
	if err := p.inner.Publish(topic, msgs...); err != nil {
		return err
	}
	if p.log != nil {
		p.log.add(msgs)
	}
	return nil
}

func (p *tap) Close() error { return nil }

// firstOrder returns, per key, the ids in order of their first appearance.
func firstOrder[T any](items []T, idKey func(T) (string, string)) map[string][]string {
	seen := map[string]bool{}
	out := map[string][]string{}
	for _, it := range items {
		id, key := idKey(it)
		if seen[id] {
			continue
		}
		seen[id] = true
		out[key] = append(out[key], id)
	}
	return out
}

// checkKeyOrder reports the first key whose first deliveries do not follow
// want (commit order).
func checkKeyOrder(want, got map[string][]string) error {
	for k, w := range want {
		g := got[k]
		if !slices.Equal(w, g) {
			for i := range min(len(w), len(g)) {
				if w[i] != g[i] {
					return fmt.Errorf("key %q: position %d got %s, want %s (%d wanted, %d seen)", k, i, g[i], w[i], len(w), len(g))
				}
			}
			return fmt.Errorf("key %q: %d events seen, want %d", k, len(g), len(w))
		}
	}
	return nil
}

var errInjected = errors.New("conformance: injected broker failure")

// PublishAsync implements outbox.AsyncPublisher (see publishAsync). before
// stands for the broker's answer, so it runs while the relay waits for the
// outcome: a before that holds a message holds its acknowledgement, as a
// hanging broker does, and the relay's other publishes go on.
func (p *tap) PublishAsync(topic string, msg *message.Message) (func(context.Context) error, error) {
	acked := func() error {
		if p.log != nil {
			p.log.add([]*message.Message{msg})
		}
		return nil
	}
	if p.before == nil {
		return publishAsync(p.inner, topic, msg, acked)
	}
	answer := make(chan error, 1)
	go func() { answer <- p.before(msg) }()
	return func(ctx context.Context) error {
		select {
		case err := <-answer:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		wait, err := publishAsync(p.inner, topic, msg, acked)
		if err != nil {
			return err
		}
		return wait(ctx)
	}, nil
}

// publishAsync lets the suite's publisher wrappers keep the relay on its
// AsyncPublisher path (PublishDirect cells): it starts msg on inner's
// PublishAsync, or publishes it at once when inner has none, and runs
// acked once the broker acknowledged it.
func publishAsync(inner message.Publisher, topic string, msg *message.Message, acked func() error) (func(context.Context) error, error) {
	ap, ok := inner.(outbox.AsyncPublisher)
	if !ok {
		err := inner.Publish(topic, msg)
		if err == nil {
			err = acked()
		}
		return func(context.Context) error { return err }, nil
	}
	wait, err := ap.PublishAsync(topic, msg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		if err := wait(ctx); err != nil {
			return err
		}
		return acked()
	}, nil
}

// lockedBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
