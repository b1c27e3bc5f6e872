package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// writerDB opens a separate pool for application writers whose sessions
// give up on any row lock after 1 s (innodb_lock_wait_timeout=1, sent by the
// driver as a session variable): an INSERT that waits for a relay's lock
// fails with error 1205 instead of silently waiting.
func writerDB(t testing.TB) *sql.DB {
	t.Helper()
	cfg, err := gomysql.ParseDSN(outboxtest.MySQLDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime = true
	cfg.InterpolateParams = true
	cfg.Params = map[string]string{"innodb_lock_wait_timeout": "1"}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var timeout int
	if err := db.QueryRow("SELECT @@SESSION.innodb_lock_wait_timeout").Scan(&timeout); err != nil || timeout != 1 {
		t.Fatalf("writer session innodb_lock_wait_timeout = %d, %v", timeout, err)
	}
	return db
}

// latencies collects the duration of application transactions.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) summary() (p50, p99, maxd time.Duration, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0, 0, 0, 0
	}
	return s[len(s)/2], s[len(s)*99/100], s[len(s)-1], len(s)
}

// appInsert is one application transaction: BEGIN (at the given isolation),
// INSERT one event through the outbox, COMMIT. It returns the time taken.
func appInsert(ctx context.Context, db *sql.DB, ob *outbox.Outbox, iso sql.IsolationLevel, key string) (time.Duration, error) {
	start := time.Now()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: iso})
	if err != nil {
		return 0, err
	}
	if err := ob.Insert(ctx, tx, &outbox.Event{Type: "app.write", Topic: "t", Key: key, Payload: []byte("p")}); err != nil {
		_ = tx.Rollback()
		return time.Since(start), err
	}
	if err := tx.Commit(); err != nil {
		return time.Since(start), err
	}
	return time.Since(start), nil
}

func isLockWait(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && me.Number == erLockWaitTimeout
}

// maxWriterLatency is deliberately generous: a writer that waits on a lock
// fails after innodb_lock_wait_timeout=1s anyway; the measured figures are
// logged.
const maxWriterLatency = time.Second

var isolationLevels = []sql.IsolationLevel{sql.LevelDefault, sql.LevelReadCommitted, sql.LevelRepeatableRead, sql.LevelSerializable}

// TestWriterNeverWaitsForOpenClaim holds a claim transaction open (its rows
// locked, its keys named-locked) and shows application INSERTs at every
// isolation level, on the same and on other keys, commit without waiting.
// The control subtest runs a locking range scan of the pending rows (what a
// claim that locked while it scanned would do) under REPEATABLE READ and
// shows the INSERT does wait, which proves the test can see the blocking it
// guards against.
func TestWriterNeverWaitsForOpenClaim(t *testing.T) {
	t.Parallel()
	t.Run("HeldClaim", func(t *testing.T) {
		// The relay's claim: rows locked and keys named-locked in a READ
		// COMMITTED transaction that stays open while the batch is
		// published.
		t.Parallel()
		b, ob, wdb := seededForClaim(t)
		if rows := b.claimHeld(t, 100).Rows(); len(rows) != 5 {
			t.Fatalf("claimed %d rows, want 5", len(rows))
		}
		writeDuringClaim(t, b, ob, wdb, "a held claim")
	})
	t.Run("ControlRepeatableReadClaimBlocks", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ob := newOutbox(t, b.drv)
		wdb := writerDB(t)
		b.writeTx(t, ob, true, &outbox.Event{Type: "seed", Topic: "t", Key: "k", Payload: []byte("s")})
		tx, err := b.db.BeginTx(b.ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		rows, err := tx.QueryContext(b.ctx, "SELECT seq FROM "+b.drv.table+
			" FORCE INDEX (claim_idx) WHERE status = 'pending' ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED")
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
		_, err = appInsert(b.ctx, wdb, ob, sql.LevelDefault, "k")
		if !isLockWait(err) {
			t.Fatalf("control: an INSERT behind the claim SELECT under REPEATABLE READ should hit the lock wait timeout, got %v", err)
		}
		t.Logf("control: same claim SELECT under REPEATABLE READ makes the INSERT wait: %v", err)
	})
}

// seededForClaim returns a table with 5 events on keys k0 and k1, its
// Outbox, and a writer connection pool.
func seededForClaim(t *testing.T) (*bundle, *outbox.Outbox, *sql.DB) {
	t.Helper()
	b := setup(t)
	ob := newOutbox(t, b.drv)
	for i := range 5 {
		b.writeTx(t, ob, true, &outbox.Event{Type: "seed", Topic: "t", Key: fmt.Sprint("k", i%2), Payload: []byte("s")})
	}
	return b, ob, writerDB(t)
}

// writeDuringClaim runs application INSERT+COMMITs at every isolation
// level, on the claimed keys and others, while the claim is open: each must
// commit without a lock wait.
func writeDuringClaim(t *testing.T, b *bundle, ob *outbox.Outbox, wdb *sql.DB, claim string) {
	t.Helper()
	var lat latencies
	for round := range 5 {
		for _, iso := range isolationLevels {
			d, err := appInsert(b.ctx, wdb, ob, iso, fmt.Sprint("k", round%3))
			if err != nil {
				t.Fatalf("INSERT at %v while %s is open: %v (lock wait: %v)", iso, claim, err, isLockWait(err))
			}
			lat.add(d)
		}
	}
	p50, p99, maxd, n := lat.summary()
	t.Logf("%d app INSERT+COMMIT while %s is open: p50 %v p99 %v max %v", n, claim, p50, p99, maxd)
	if maxd > maxWriterLatency {
		t.Fatalf("a writer took %v", maxd)
	}
}

// TestWriterNeverWaitsForStuckRelay reproduces the watermill-sql v3 scenario
// (DESIGN: application INSERTs waited 2.5 s behind a 300 ms broker and past
// 15 s behind a failing one): one relay is stuck on a broker whose Publish
// never returns, holding its leases and extending them every second, while a
// second relay keeps claiming and publishing to a healthy broker and
// application writers INSERT+COMMIT events, including on the stuck key.
func TestWriterNeverWaitsForStuckRelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ob := newOutbox(t, b.drv)
	wdb := writerDB(t)

	hang := &hangingPublisher{release: make(chan struct{}), entered: make(chan string, 1)}
	stuck := &outbox.Event{Type: "stuck", Topic: "t", Key: "stuck-key", Payload: []byte("s")}
	b.writeTx(t, ob, true, stuck)
	// Cleanups run last-in first-out: the broker is released after the
	// relays were told to stop.
	t.Cleanup(func() { close(hang.release) })
	// Concurrency 1: a relay stuck on its broker legitimately holds up to
	// Concurrency batches until PublishTimeout; this test wants one.
	startRelay(t, b.drv, hang, outbox.RelayConfig{ID: "stuck-relay", Concurrency: 1, LeaseDuration: 3 * time.Second, PublishTimeout: time.Minute, ShutdownTimeout: 500 * time.Millisecond})
	select {
	case id := <-hang.entered:
		if id != stuck.ID {
			t.Fatalf("hanging broker got %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stuck relay never published")
	}
	rec := newRecorder(t)
	startRelay(t, b.drv, rec, outbox.RelayConfig{ID: "healthy-relay", BatchSize: 10})

	const writers, perWriter = 4, 40
	var lat latencies
	var wg sync.WaitGroup
	deadline := time.Now().Add(4 * time.Second) // spans several lease extensions
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < perWriter || time.Now().Before(deadline); i++ {
				key := fmt.Sprint("w", w, "-", i%5)
				if i%10 == 0 {
					key = "stuck-key" // held back behind the stuck event, still inserted at once
				}
				d, err := appInsert(b.ctx, wdb, ob, isolationLevels[i%len(isolationLevels)], key)
				if err != nil {
					t.Errorf("writer %d insert %d: %v (lock wait: %v)", w, i, err, isLockWait(err))
					return
				}
				lat.add(d)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	p50, p99, maxd, n := lat.summary()
	t.Logf("%d app INSERT+COMMIT with a relay stuck on a hanging broker and a second relay claiming: p50 %v p99 %v max %v", n, p50, p99, maxd)
	if maxd > maxWriterLatency {
		t.Fatalf("a writer took %v", maxd)
	}

	// The stuck event is still pending, held by the stuck relay's open
	// claim (no lease is written), its key's later events wait behind it,
	// and every other event was delivered.
	e, err := ob.Get(b.ctx, stuck.ID)
	if err != nil || e.Status != outbox.StatusPending || e.Attempts != 0 {
		t.Fatalf("stuck event %+v, %v", e, err)
	}
	eventually(t, 20*time.Second, "other keys delivered by the healthy relay", func() bool {
		page, err := ob.List(b.ctx, outbox.ListFilter{Status: outbox.StatusPending, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range page.Events {
			if ev.Key != "stuck-key" {
				return false
			}
		}
		return true
	})
	for _, m := range rec.snapshot() {
		if m.Metadata.Get(outbox.MetadataKey) == "stuck-key" {
			t.Fatalf("healthy relay published %s of the stuck key while it is held", m.UUID)
		}
	}
}
