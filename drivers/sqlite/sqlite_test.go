package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/drivers/sqlite"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

type bundle struct {
	db   *sql.DB
	drv  *sqlite.Driver
	ob   *outbox.Outbox
	path string
}

// setup returns a migrated outbox in a fresh database file of its own.
func setup(t testing.TB) *bundle {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	drv, err := sqlite.New(db, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.MigrateUp(context.Background(), &outboxdriver.MigrateUpParams{}); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{db: db, drv: drv, ob: ob, path: path}
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
	db := setup(t).db
	for name, cfg := range map[string]sqlite.Config{
		"table with quote":   {Table: `out"box`},
		"table with space":   {Table: "out box"},
		"table with dot":     {Table: "main.outbox"},
		"table too long":     {Table: "t" + strings.Repeat("x", 63)},
		"table starts digit": {Table: "1outbox"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := sqlite.New(db, cfg)
			if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "sqlite.Config.Table") {
				t.Fatalf("want ErrInvalidConfig naming the field, got %v", err)
			}
		})
	}
	t.Run("nil db", func(t *testing.T) {
		t.Parallel()
		if _, err := sqlite.New(nil, sqlite.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Fatalf("want ErrInvalidConfig, got %v", err)
		}
	})
	t.Run("bad paths", func(t *testing.T) {
		t.Parallel()
		for _, p := range []string{"", ":memory:", "a.db?mode=ro"} {
			if _, err := sqlite.Open(p); !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Fatalf("Open(%q): want ErrInvalidConfig, got %v", p, err)
			}
		}
	})
	t.Run("unwritable path", func(t *testing.T) {
		t.Parallel()
		if _, err := sqlite.Open(filepath.Join(t.TempDir(), "missing-dir", "x.db")); err == nil {
			t.Fatal("Open in a missing directory succeeded")
		}
	})
}

func TestOpenSettings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var mode string
	var busy, fk int
	if err := b.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := b.db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
		t.Fatal(err)
	}
	if err := b.db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || busy != 5000 || fk != 1 {
		t.Fatalf("journal_mode=%s busy_timeout=%d foreign_keys=%d", mode, busy, fk)
	}
	if b.drv.Name() != "sqlite" || b.drv.Table() != `"outbox"` || b.drv.DB() != b.db {
		t.Fatalf("name=%s table=%s", b.drv.Name(), b.drv.Table())
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()

	t.Run("idempotent and concurrent", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "mig.db")
		db, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		drv, err := sqlite.New(db, sqlite.Config{Table: "billing_outbox"})
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
		if err := drv.Ping(context.Background()); !errors.Is(err, outbox.ErrNotMigrated) {
			t.Fatalf("ping before migrate: want ErrNotMigrated, got %v", err)
		}
		// Two handles on one file stand in for two processes.
		db2, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer db2.Close()
		drv2, _ := sqlite.New(db2, sqlite.Config{Table: "billing_outbox"})
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for i := range 6 {
			d := drv
			if i%2 == 1 {
				d = drv2
			}
			wg.Go(func() { errs <- d.MigrateUp(context.Background(), &outboxdriver.MigrateUpParams{}) })
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
		if len(st.Pending) != 0 || len(st.Applied) != 2 {
			t.Fatalf("after migrate: status %+v", st)
		}
		if err := drv.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("not migrated is a clear error", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		drv, err := sqlite.New(b.db, sqlite.Config{Table: "none"})
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
		tx, _ := b.db.Begin()
		defer tx.Rollback()
		if err := ob.Insert(context.Background(), tx, ev("k", 1)); !errors.Is(err, outbox.ErrNotMigrated) {
			t.Fatalf("insert: want ErrNotMigrated, got %v", err)
		}
	})
}

// TestRelayGoChannel runs the relay into Watermill's in-process pub/sub with
// a real subscriber: what the subscriber receives is exactly what committed.
func TestRelayGoChannel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pubsub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	t.Cleanup(func() { pubsub.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	msgs, err := pubsub.Subscribe(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, b, pubsub, outbox.RelayConfig{})

	var committed []string
	for i := range 30 {
		tx, err := b.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		e := ev(fmt.Sprintf("k%d", i%3), i)
		if err := b.ob.Insert(ctx, tx, e); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			_ = tx.Rollback()
			continue
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		committed = append(committed, e.ID)
	}
	got := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for len(got) < len(committed) {
		select {
		case m := <-msgs:
			got[m.UUID] = true
			m.Ack()
		case <-timeout:
			t.Fatalf("received %d of %d", len(got), len(committed))
		}
	}
	for _, id := range committed {
		if !got[id] {
			t.Fatalf("committed %s not received", id)
		}
	}
	// Nothing else arrives: the rolled-back events are never published.
	select {
	case m := <-msgs:
		if !got[m.UUID] {
			t.Fatalf("unexpected message %s (rolled back?)", m.UUID)
		}
	case <-time.After(300 * time.Millisecond):
	}
	eventually(t, "all marked delivered", func() bool { return b.stats(t).Pending == 0 })
}
