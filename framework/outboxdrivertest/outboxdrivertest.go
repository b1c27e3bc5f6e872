// Package outboxdrivertest is the shared test suite of outboxdriver
// implementations, in the spirit of River's riverdrivertest: every driver
// (drivers/postgres, drivers/mysql, drivers/sqlite, third-party dialects)
// runs Run from its own tests against a real database, instead of copying
// test bodies from one driver to the next.
//
// Run covers the Driver contract (insert, get, list, stats, purge, retry,
// migrations), the claim protocol the driver implements
// (outboxdriver.HeldClaimer or outboxdriver.LeasedClaimer) and, when the
// driver implements it, outboxdriver.Acknowledger, with the
// driver's methods called directly: no relay, no broker. Driver-specific
// behaviour (query plans, notifications, locking against writers) stays in
// the driver's own tests; relay behaviour end to end is the conformance
// suite's.
package outboxdrivertest

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// Harness is what Run needs of one driver implementation.
type Harness struct {
	// NewDriver returns a driver on a fresh table (or database) of its own,
	// not migrated yet, that is dropped when t ends. Tests run in parallel:
	// each call must be independent of the others.
	NewDriver func(t *testing.T) outboxdriver.Driver

	// Elapse makes d of database time pass for every row of drv's table:
	// it moves created_at, next_attempt_at, delivered_at and locked_until
	// back by d (NULLs stay NULL), so that backoffs and leases expire
	// without the test sleeping.
	Elapse func(t *testing.T, drv outboxdriver.Driver, d time.Duration)

	// SingleWriter is set for databases with one writer at a time
	// (SQLite): the tests that hold two write transactions open at once
	// (an uncommitted insert during a claim, writers committing out of seq
	// order) are skipped, as such a database commits in seq order.
	SingleWriter bool
}

// Run runs the suite. It calls t.Parallel in every test.
func Run(t *testing.T, h Harness) {
	if h.NewDriver == nil || h.Elapse == nil {
		t.Fatal("outboxdrivertest: Harness.NewDriver and Harness.Elapse are required")
	}
	t.Run("Migrate", func(t *testing.T) { testMigrate(t, h) })
	t.Run("Insert", func(t *testing.T) { testInsert(t, h) })
	t.Run("Get", func(t *testing.T) { testGet(t, h) })
	t.Run("List", func(t *testing.T) { testList(t, h) })
	t.Run("Stats", func(t *testing.T) { testStats(t, h) })
	t.Run("Purge", func(t *testing.T) { testPurge(t, h) })
	t.Run("Retry", func(t *testing.T) { testRetry(t, h) })
	t.Run("RetryResend", func(t *testing.T) { testRetryResend(t, h) })
	t.Run("Claim", func(t *testing.T) { testClaim(t, h) })
	probe := h.NewDriver(t)
	_, held := probe.(outboxdriver.HeldClaimer)
	_, leased := probe.(outboxdriver.LeasedClaimer)
	if held == leased {
		t.Fatalf("driver %T must implement exactly one claim protocol (held %v, leased %v)", probe, held, leased)
	}
	if held {
		t.Run("Held", func(t *testing.T) { testHeld(t, h) })
	} else {
		t.Run("Leased", func(t *testing.T) { testLeased(t, h) })
	}
	if _, ok := probe.(outboxdriver.Acknowledger); ok {
		t.Run("Ack", func(t *testing.T) { testAck(t, h) })
	}
}

// bundle is one test's migrated driver and the outbox core on top of it,
// used for inserting (outbox.Insert validates and fills ids).
type bundle struct {
	h   Harness
	drv outboxdriver.Driver
	ob  *outbox.Outbox
	ctx context.Context
}

func setup(t *testing.T, h Harness) *bundle {
	t.Helper()
	drv := h.NewDriver(t)
	if err := drv.MigrateUp(t.Context(), &outboxdriver.MigrateUpParams{}); err != nil {
		t.Fatalf("MigrateUp: %v", err)
	}
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{h: h, drv: drv, ob: ob, ctx: t.Context()}
}

// ev returns an event of key with a payload naming i.
func ev(key string, i int) *outbox.Event {
	return &outbox.Event{Type: "test.happened", Topic: "test", Key: key, Payload: fmt.Appendf(nil, `{"i":%d}`, i)}
}

// insert commits events in one transaction.
func (b *bundle) insert(t *testing.T, events ...*outbox.Event) {
	t.Helper()
	tx := b.begin(t)
	if err := b.ob.Insert(b.ctx, tx, events...); err != nil {
		_ = tx.Rollback()
		t.Fatalf("Insert: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// insertOpen inserts events in a transaction it leaves open for the test
// to commit or roll back (rolled back when the test ends otherwise).
func (b *bundle) insertOpen(t *testing.T, events ...*outbox.Event) *sql.Tx {
	t.Helper()
	tx := b.begin(t)
	t.Cleanup(func() { _ = tx.Rollback() })
	if err := b.ob.Insert(b.ctx, tx, events...); err != nil {
		t.Fatalf("Insert: %v", err)
	}
	return tx
}

func (b *bundle) begin(t *testing.T) *sql.Tx {
	t.Helper()
	tx, err := b.drv.DB().BeginTx(b.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func (b *bundle) get(t *testing.T, id string) *outboxdriver.EventRow {
	t.Helper()
	r, err := b.drv.EventGet(b.ctx, &outboxdriver.EventGetParams{ID: id})
	if err != nil {
		t.Fatalf("EventGet %s: %v", id, err)
	}
	return r
}

func (b *bundle) list(t *testing.T, p outboxdriver.EventListParams) []string {
	t.Helper()
	if p.Limit == 0 {
		p.Limit = 1000
	}
	rows, err := b.drv.EventList(b.ctx, &p)
	if err != nil {
		t.Fatalf("EventList %+v: %v", p, err)
	}
	return rowIDs(rows)
}

func (b *bundle) stats(t *testing.T) *outboxdriver.EventStats {
	t.Helper()
	s, err := b.drv.EventStats(b.ctx, &outboxdriver.EventStatsParams{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// settle claims every ready event with whichever protocol the driver has
// and records the given outcomes; the claimed events in neither list stay
// pending (held: untouched; leased: released).
func (b *bundle) settle(t *testing.T, delivered []string, failed ...outboxdriver.FailedAttempt) {
	t.Helper()
	c := claimerOf(t, b)
	batch := c.claim(t, "settle", 10000, 0)
	claimed := map[string]bool{}
	for _, r := range batch.rows {
		claimed[r.ID] = true
	}
	for _, id := range delivered {
		if !claimed[id] {
			t.Fatalf("settle: event %s is not ready", id)
		}
	}
	for _, f := range failed {
		if !claimed[f.ID] {
			t.Fatalf("settle: event %s is not ready", f.ID)
		}
	}
	batch.finish(t, delivered, failed)
}

func rowIDs(rows []*outboxdriver.EventRow) []string {
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

func eventIDs(events ...*outbox.Event) []string {
	out := make([]string, 0, len(events))
	for _, e := range events {
		out = append(out, e.ID)
	}
	return out
}

// mustN fails unless a method returned want rows and no error.
func mustN(t *testing.T, what string, want int64) func(int64, error) {
	t.Helper()
	return func(n int64, err error) {
		t.Helper()
		if err != nil || n != want {
			t.Fatalf("%s: %d rows, %v; want %d", what, n, err, want)
		}
	}
}

func wantIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}
