package mysql

import (
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

func TestNewConfig(t *testing.T) {
	t.Parallel()
	db := &sql.DB{}
	t.Run("Default", func(t *testing.T) {
		t.Parallel()
		d, err := New(db, Config{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Table() != "`outbox`" || d.Name() != "mysql" || d.DB() != db {
			t.Fatalf("got table %s name %s", d.Table(), d.Name())
		}
	})
	t.Run("NilDB", func(t *testing.T) {
		t.Parallel()
		if _, err := New(nil, Config{}); !errors.Is(err, outboxdriver.ErrInvalidConfig) {
			t.Fatalf("want ErrInvalidConfig, got %v", err)
		}
	})
	for _, bad := range []string{"1abc", "a-b", "a`b", "outbox; DROP TABLE x", strings.Repeat("a", 54)} {
		t.Run("Invalid", func(t *testing.T) {
			t.Parallel()
			_, err := New(db, Config{Table: bad})
			if !errors.Is(err, outboxdriver.ErrInvalidConfig) || !strings.Contains(err.Error(), "mysql.Config.Table") {
				t.Fatalf("table %q: want ErrInvalidConfig naming mysql.Config.Table, got %v", bad, err)
			}
		})
	}
	t.Run("LongestAccepted", func(t *testing.T) {
		t.Parallel()
		if _, err := New(db, Config{Table: strings.Repeat("a", 53)}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDSNFromURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"mysql://root@127.0.0.1:3306/test":   "root@tcp(127.0.0.1:3306)/test",
		"mysql://app:s3cret@db/app?tls=true": "app:s3cret@tcp(db:3306)/app?tls=true",
		"mysql://db.internal:3307/billing":   "tcp(db.internal:3307)/billing",
	} {
		got, err := DSNFromURL(in)
		if err != nil || got != want {
			t.Errorf("DSNFromURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"postgres://x/y", "mysql://host", "mysql:///db", "::"} {
		if _, err := DSNFromURL(bad); !errors.Is(err, outboxdriver.ErrInvalidConfig) {
			t.Errorf("DSNFromURL(%q): want ErrInvalidConfig, got %v", bad, err)
		}
	}
}

func TestConfigureDSN(t *testing.T) {
	t.Parallel()
	t.Run("SetsDefaults", func(t *testing.T) {
		t.Parallel()
		got, err := ConfigureDSN("root@tcp(127.0.0.1:3306)/test")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"parseTime=true", "interpolateParams=true"} {
			if !strings.Contains(got, want) {
				t.Fatalf("%s lacks %s", got, want)
			}
		}
	})
	t.Run("KeepsExplicitInterpolateOff", func(t *testing.T) {
		t.Parallel()
		got, err := ConfigureDSN("root@tcp(127.0.0.1:3306)/test?interpolateParams=false&loc=UTC&parseTime=true")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(got, "interpolateParams") {
			t.Fatalf("interpolateParams turned on in %s", got)
		}
	})
	t.Run("UnsafeCharsetNoInterpolation", func(t *testing.T) {
		t.Parallel()
		got, err := ConfigureDSN("root@tcp(127.0.0.1:3306)/test?charset=gbk")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(got, "interpolateParams") {
			t.Fatalf("interpolateParams turned on with charset gbk: %s", got)
		}
	})
	for _, c := range []struct{ dsn, setting string }{
		{"root@tcp(127.0.0.1:3306)/test?parseTime=false", "parseTime"},
		{"root@tcp(127.0.0.1:3306)/test?loc=America%2FNew_York", "loc"},
		{"root@tcp(127.0.0.1:3306/test", "DSN"},
	} {
		t.Run("Rejects_"+c.setting, func(t *testing.T) {
			t.Parallel()
			_, err := ConfigureDSN(c.dsn)
			if !errors.Is(err, outboxdriver.ErrInvalidConfig) || !strings.Contains(err.Error(), c.setting) {
				t.Fatalf("want ErrInvalidConfig naming %s, got %v", c.setting, err)
			}
		})
	}
}

func TestCheckVersion(t *testing.T) {
	t.Parallel()
	for v, ok := range map[string]bool{
		"8.0.36": true, "8.0.1": true, "8.4.0-commercial": true, "9.1.0": true,
		"8.0.0-dmr": false, "5.7.44-log": false,
		"10.11.6-MariaDB-0+deb12u1": true, "10.6.0-MariaDB": true, "11.4.2-MariaDB": true,
		"5.5.5-10.11.6-MariaDB": true, "10.5.23-MariaDB": false, "10.3.39-MariaDB-log": false,
		"garbage": false,
	} {
		err := checkVersion(v)
		if ok != (err == nil) || (err != nil && !errors.Is(err, ErrUnsupportedServer)) {
			t.Errorf("checkVersion(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	t.Run("NotMigrated", func(t *testing.T) {
		t.Parallel()
		b := setupUnmigrated(t)
		if err := b.drv.Ping(b.ctx); !errors.Is(err, outboxdriver.ErrNotMigrated) {
			t.Fatalf("want ErrNotMigrated, got %v", err)
		}
	})
	t.Run("Migrated", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if err := b.drv.Ping(b.ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("WithoutParseTime", func(t *testing.T) {
		t.Parallel()
		testDB(t)
		cfg, err := gomysql.ParseDSN(outboxtest.MySQLDSN())
		if err != nil {
			t.Fatal(err)
		}
		cfg.ParseTime = false
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		d, _ := New(db, Config{})
		err = d.Ping(t.Context())
		if !errors.Is(err, ErrConnectionSettings) || !strings.Contains(err.Error(), "parseTime") {
			t.Fatalf("want ErrConnectionSettings naming parseTime, got %v", err)
		}
	})
}

func TestNotMigrated(t *testing.T) {
	t.Parallel()
	b := setupUnmigrated(t)
	_, err := b.drv.EventGet(b.ctx, &outboxdriver.EventGetParams{ID: uuid.NewString()})
	if !errors.Is(err, outboxdriver.ErrNotMigrated) {
		t.Fatalf("EventGet: want ErrNotMigrated, got %v", err)
	}
	_, err = b.drv.EventClaimBatch(b.ctx, &outboxdriver.EventClaimBatchParams{RelayID: "r", Limit: 10, Lease: time.Second})
	if !errors.Is(err, outboxdriver.ErrNotMigrated) {
		t.Fatalf("EventClaimBatch: want ErrNotMigrated, got %v", err)
	}
	tx, err := b.db.BeginTx(b.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	err = b.drv.EventInsert(b.ctx, &outboxdriver.EventInsertParams{Tx: tx, Events: []outboxdriver.InsertEvent{newEvent("k")}})
	if !errors.Is(err, outboxdriver.ErrNotMigrated) {
		t.Fatalf("EventInsert: want ErrNotMigrated, got %v", err)
	}
	st, err := b.drv.MigrateStatus(b.ctx, &outboxdriver.MigrateStatusParams{})
	if err != nil || len(st.Applied) != 0 || !slices.Equal(st.Pending, []int{1, 2}) {
		t.Fatalf("MigrateStatus = %+v, %v", st, err)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	t.Run("Idempotent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for range 2 {
			if err := b.drv.MigrateUp(b.ctx, &outboxdriver.MigrateUpParams{}); err != nil {
				t.Fatal(err)
			}
		}
		st, err := b.drv.MigrateStatus(b.ctx, &outboxdriver.MigrateStatusParams{})
		if err != nil || !slices.Equal(st.Applied, []int{1, 2}) || len(st.Pending) != 0 {
			t.Fatalf("MigrateStatus = %+v, %v", st, err)
		}
		var n int
		if err := b.db.QueryRow("SELECT COUNT(*) FROM " + b.drv.lockTable).Scan(&n); err != nil || n != 1 {
			t.Fatalf("lock rows = %d, %v", n, err)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		b := setupUnmigrated(t)
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for range 6 {
			wg.Go(func() {
				d, _ := New(b.db, b.drv.cfg)
				errs <- d.MigrateUp(b.ctx, &outboxdriver.MigrateUpParams{})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := b.db.QueryRow("SELECT COUNT(*) FROM " + b.drv.verTable).Scan(&n); err != nil || n != 2 {
			t.Fatalf("version rows = %d, %v", n, err)
		}
		if err := b.drv.Ping(b.ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestInsert(t *testing.T) {
	t.Parallel()
	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := newEvent("key-1")
		e.Payload = []byte{0, 1, 2, 0xff}
		e.Headers = []byte(`{"a":"1","traceparent":"00-x"}`)
		b.insert(t, e)
		r := b.get(t, e.ID)
		if r.ID != e.ID || r.Type != e.Type || r.Topic != e.Topic || r.Key != e.Key || string(r.Payload) != string(e.Payload) {
			t.Fatalf("got %+v", r)
		}
		if r.Status != outboxdriver.StatusPending || r.Attempts != 0 || r.LastError != "" || r.DeliveredAt != nil || r.LockedUntil != nil || r.LockedBy != "" {
			t.Fatalf("fresh state wrong: %+v", r)
		}
		if !r.CreatedAt.Equal(e.CreatedAt) || r.CreatedAt.Location() != time.UTC {
			t.Fatalf("created_at %v (%v), want %v", r.CreatedAt, r.CreatedAt.Location(), e.CreatedAt)
		}
		if !strings.Contains(string(r.Headers), `"traceparent"`) {
			t.Fatalf("headers %s", r.Headers)
		}
		// Ids are found whatever their spelling.
		if r2 := b.get(t, strings.ToUpper(e.ID)); r2.Seq != r.Seq {
			t.Fatal("uppercase id not found")
		}
		if _, err := b.drv.EventGet(b.ctx, &outboxdriver.EventGetParams{ID: uuid.NewString()}); !errors.Is(err, outboxdriver.ErrNotFound) {
			t.Fatalf("want ErrNotFound, got %v", err)
		}
		if _, err := b.drv.EventGet(b.ctx, &outboxdriver.EventGetParams{ID: "nope"}); !errors.Is(err, outboxdriver.ErrNotFound) {
			t.Fatalf("want ErrNotFound, got %v", err)
		}
	})
	t.Run("IdempotentByID", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := newEvent("k")
		b.insert(t, e)
		dup := e
		b.insert(t, dup, newEvent("k")) // the identical duplicate is skipped, the tx still commits
		b.insert(t, dup)
		dup.Type = "other" // a reused id with different content is an error
		tx, err := b.db.BeginTx(b.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() //nolint:errcheck // test cleanup
		err = b.drv.EventInsert(b.ctx, &outboxdriver.EventInsertParams{Tx: tx, Events: []outboxdriver.InsertEvent{dup}})
		if !errors.Is(err, outboxdriver.ErrDuplicateEvent) {
			t.Fatalf("reused id with another type: %v, want ErrDuplicateEvent", err)
		}
		if r := b.get(t, e.ID); r.Type != e.Type {
			t.Fatalf("duplicate overwrote the event: %+v", r)
		}
		rows, _ := b.drv.EventList(b.ctx, &outboxdriver.EventListParams{Limit: 100})
		if len(rows) != 2 {
			t.Fatalf("%d rows, want 2", len(rows))
		}
	})
	t.Run("Rollback", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tx, _ := b.db.BeginTx(b.ctx, nil)
		e := newEvent("k")
		if err := b.drv.EventInsert(b.ctx, &outboxdriver.EventInsertParams{Tx: tx, Events: []outboxdriver.InsertEvent{e}}); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback()
		if _, err := b.drv.EventGet(b.ctx, &outboxdriver.EventGetParams{ID: e.ID}); !errors.Is(err, outboxdriver.ErrNotFound) {
			t.Fatalf("rolled back event visible: %v", err)
		}
	})
	t.Run("ChunkedManyAndLarge", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var events []outboxdriver.InsertEvent
		for i := range 2500 {
			events = append(events, newEvent(fmt.Sprint("k", i%7)))
		}
		// A few 1 MiB payloads force byte-based chunking (max_allowed_packet).
		for i := range 20 {
			events[i*100].Payload = make([]byte, 1<<20)
		}
		b.insert(t, events...)
		st, err := b.drv.EventStats(b.ctx, &outboxdriver.EventStatsParams{})
		if err != nil || st.Pending != 2500 {
			t.Fatalf("stats %+v, %v", st, err)
		}
		if r := b.get(t, events[100].ID); len(r.Payload) != 1<<20 {
			t.Fatalf("payload %d bytes", len(r.Payload))
		}
	})
	t.Run("ErrorFailsInsert", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := newEvent("k")
		e.Headers = []byte(`not json`)
		tx, _ := b.db.BeginTx(b.ctx, nil)
		defer tx.Rollback()
		if err := b.drv.EventInsert(b.ctx, &outboxdriver.EventInsertParams{Tx: tx, Events: []outboxdriver.InsertEvent{e}}); err == nil {
			t.Fatal("invalid JSON headers accepted")
		}
	})
}

func TestClaim(t *testing.T) {
	t.Parallel()
	t.Run("SkippedEarlierRowHoldsBackItsKey", func(t *testing.T) {
		// A claim skips a row another transaction has locked (here a
		// SELECT ... FOR UPDATE; in production the rows of a writer that is
		// committing while the claim scans). The key's later rows must not
		// be claimed ahead of it, by either claim.
		t.Parallel()
		claims := map[string]func(b *bundle) []string{
			"leased": func(b *bundle) []string { return ids(b.claim(t, "r", 10, time.Minute)) },
			"held": func(b *bundle) []string {
				batch := b.claimHeld(t, 10)
				defer batch.Abort()
				return ids(batch.Rows())
			},
		}
		for name, claim := range claims {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				k := []outboxdriver.InsertEvent{newEvent("k"), newEvent("k"), newEvent("k")}
				other := newEvent("other")
				b.insert(t, append(k, other)...)
				tx, err := b.db.BeginTx(b.ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback()
				var seq int64
				if err := tx.QueryRow("SELECT seq FROM "+b.drv.table+" WHERE id = ? FOR UPDATE", k[0].ID).Scan(&seq); err != nil {
					t.Fatal(err)
				}
				if got := claim(b); !slices.Equal(got, []string{other.ID}) {
					t.Fatalf("claimed %v while the key's first row was locked, want only %s", got, other.ID)
				}
				_ = tx.Rollback()
				if got := claim(b); len(got) < 3 || !slices.Equal(got[:3], ids2(k)) {
					t.Fatalf("after the lock: claimed %v, want the key in order", got)
				}
			})
		}
	})
	t.Run("OrderLimitAndLease", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var events []outboxdriver.InsertEvent
		for range 5 {
			events = append(events, newEvent(""))
		}
		b.insert(t, events...)
		got := b.claim(t, "r1", 3, time.Minute)
		if !slices.Equal(ids(got), ids2(events[:3])) {
			t.Fatalf("claimed %v", ids(got))
		}
		for i := 1; i < len(got); i++ {
			if got[i].Seq <= got[i-1].Seq {
				t.Fatal("not ordered by seq")
			}
		}
		r := b.get(t, got[0].ID)
		if r.LockedBy != "r1" || r.LockedUntil == nil || time.Until(*r.LockedUntil) < 50*time.Second {
			t.Fatalf("lease not recorded: %+v", r)
		}
		// Leased rows are not claimed again; the rest are.
		if got2 := b.claim(t, "r2", 10, time.Minute); !slices.Equal(ids(got2), ids2(events[3:])) {
			t.Fatalf("second claim %v", ids(got2))
		}
		if got3 := b.claim(t, "r3", 10, time.Minute); len(got3) != 0 {
			t.Fatalf("third claim %v", ids(got3))
		}
		if got4 := b.claim(t, "r3", 0, time.Minute); len(got4) != 0 {
			t.Fatal("Limit 0 claimed")
		}
	})
	t.Run("ExpiredLeaseReclaimed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := newEvent("k")
		b.insert(t, e)
		if got := b.claim(t, "r1", 10, 200*time.Millisecond); len(got) != 1 {
			t.Fatalf("claimed %d", len(got))
		}
		time.Sleep(300 * time.Millisecond)
		got := b.claim(t, "r2", 10, time.Minute)
		if len(got) != 1 || got[0].ID != e.ID {
			t.Fatalf("expired lease not reclaimed: %v", ids(got))
		}
		// Fencing: the first relay can no longer record an outcome.
		n, err := b.drv.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r1", IDs: []string{e.ID}})
		if err != nil || n != 0 {
			t.Fatalf("stale relay marked delivered: %d, %v", n, err)
		}
	})
	t.Run("PerKeyOrder", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		a1, a2, b1, n1, a3 := newEvent("a"), newEvent("a"), newEvent("b"), newEvent(""), newEvent("a")
		b.insert(t, a1, a2, b1, n1, a3)
		// One claim takes a whole key's run: the relay publishes it in order.
		got := b.claim(t, "r1", 2, time.Minute)
		if !slices.Equal(ids(got), []string{a1.ID, a2.ID}) {
			t.Fatalf("claimed %v", keys(got))
		}
		// While a1 and a2 are leased, a3 is held back; other keys flow.
		got = b.claim(t, "r2", 10, time.Minute)
		if !slices.Equal(ids(got), []string{b1.ID, n1.ID}) {
			t.Fatalf("claimed %v, want b1 and the keyless event", keys(got))
		}
		// a1 delivered, a2 fails with backoff: a3 still waits for a2.
		mustN(t, 1)(b.drv.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r1", IDs: []string{a1.ID}}))
		mustN(t, 1)(b.drv.EventMarkFailed(b.ctx, &outboxdriver.EventMarkFailedParams{RelayID: "r1",
			Failures: []outboxdriver.FailedAttempt{{ID: a2.ID, Error: "boom", Delay: 400 * time.Millisecond}}}))
		if got = b.claim(t, "r3", 10, time.Minute); len(got) != 0 {
			t.Fatalf("claimed during backoff: %v", keys(got))
		}
		time.Sleep(500 * time.Millisecond)
		got = b.claim(t, "r3", 10, time.Minute)
		if !slices.Equal(ids(got), []string{a2.ID, a3.ID}) {
			t.Fatalf("after backoff claimed %v", ids(got))
		}
		if got[0].Attempts != 1 {
			t.Fatalf("attempts %d", got[0].Attempts)
		}
		// A dead event does not hold its key back.
		mustN(t, 1)(b.drv.EventMarkFailed(b.ctx, &outboxdriver.EventMarkFailedParams{RelayID: "r3",
			Failures: []outboxdriver.FailedAttempt{{ID: a2.ID, Error: "final", Dead: true}}}))
		mustN(t, 1)(b.drv.EventRelease(b.ctx, &outboxdriver.EventReleaseParams{RelayID: "r3", IDs: []string{a3.ID}}))
		got = b.claim(t, "r4", 10, time.Minute)
		if !slices.Equal(ids(got), []string{a3.ID}) {
			t.Fatalf("after dead claimed %v", ids(got))
		}
	})
	t.Run("LateCommitSmallerSeqNotSkipped", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		early := newEvent("")
		txEarly, _ := b.db.BeginTx(b.ctx, nil)
		if err := b.drv.EventInsert(b.ctx, &outboxdriver.EventInsertParams{Tx: txEarly, Events: []outboxdriver.InsertEvent{early}}); err != nil {
			t.Fatal(err)
		}
		late := newEvent("")
		b.insert(t, late) // higher seq, commits first
		if got := b.claim(t, "r1", 10, time.Minute); !slices.Equal(ids(got), []string{late.ID}) {
			t.Fatalf("claimed %v", ids(got))
		}
		mustN(t, 1)(b.drv.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r1", IDs: []string{late.ID}}))
		if err := txEarly.Commit(); err != nil {
			t.Fatal(err)
		}
		got := b.claim(t, "r1", 10, time.Minute)
		if !slices.Equal(ids(got), []string{early.ID}) || got[0].Seq >= b.get(t, late.ID).Seq {
			t.Fatalf("late-committed smaller seq skipped: %v", ids(got))
		}
	})
	t.Run("ConcurrentClaimsDisjoint", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var events []outboxdriver.InsertEvent
		for i := range 600 {
			events = append(events, newEvent(fmt.Sprint("k", i%10)))
		}
		b.insert(t, events...)
		var mu sync.Mutex
		seen := map[string]string{}
		var wg sync.WaitGroup
		for r := range 4 {
			wg.Go(func() {
				relay := fmt.Sprint("r", r)
				for {
					rows, err := b.drv.EventClaimBatch(b.ctx, &outboxdriver.EventClaimBatchParams{RelayID: relay, Limit: 25, Lease: time.Minute})
					if err != nil {
						t.Error(err)
						return
					}
					if len(rows) == 0 {
						return
					}
					mu.Lock()
					for _, row := range rows {
						if prev, ok := seen[row.ID]; ok {
							t.Errorf("%s claimed by %s and %s", row.ID, prev, relay)
						}
						seen[row.ID] = relay
					}
					mu.Unlock()
					if _, err := b.drv.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: relay, IDs: ids(rows)}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if len(seen) != len(events) {
			t.Fatalf("claimed %d of %d", len(seen), len(events))
		}
	})
}

func ids2(events []outboxdriver.InsertEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func mustN(t *testing.T, want int64) func(int64, error) {
	t.Helper()
	return func(n int64, err error) {
		t.Helper()
		if err != nil || n != want {
			t.Fatalf("got %d, %v; want %d", n, err, want)
		}
	}
}

func TestLeaseAndOutcomes(t *testing.T) {
	t.Parallel()
	t.Run("Extend", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := newEvent("")
		b.insert(t, e)
		b.claim(t, "r1", 10, time.Second)
		mustN(t, 0)(b.drv.EventExtendLeases(b.ctx, &outboxdriver.EventExtendLeasesParams{RelayID: "other", IDs: []string{e.ID}, Lease: time.Hour}))
		mustN(t, 1)(b.drv.EventExtendLeases(b.ctx, &outboxdriver.EventExtendLeasesParams{RelayID: "r1", IDs: []string{e.ID, "bad-id"}, Lease: time.Hour}))
		if r := b.get(t, e.ID); time.Until(*r.LockedUntil) < 50*time.Minute {
			t.Fatalf("lease not extended: %v", r.LockedUntil)
		}
		mustN(t, 0)(b.drv.EventExtendLeases(b.ctx, &outboxdriver.EventExtendLeasesParams{RelayID: "r1", Lease: time.Hour}))
	})
	t.Run("MarkDelivered", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e1, e2 := newEvent("k"), newEvent("")
		b.insert(t, e1, e2)
		b.claim(t, "r1", 10, time.Minute)
		mustN(t, 0)(b.drv.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r2", IDs: []string{e1.ID}}))
		mustN(t, 2)(b.drv.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r1", IDs: []string{e1.ID, e2.ID}}))
		r := b.get(t, e1.ID)
		if r.Status != outboxdriver.StatusDelivered || r.Attempts != 1 || r.DeliveredAt == nil || r.LockedBy != "" || r.LockedUntil != nil {
			t.Fatalf("%+v", r)
		}
		if time.Since(*r.DeliveredAt).Abs() > time.Minute {
			t.Fatalf("delivered_at %v is not UTC now", r.DeliveredAt)
		}
		mustN(t, 0)(b.drv.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r1", IDs: []string{e1.ID}}))
	})
	t.Run("MarkFailed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e1, e2 := newEvent("k1"), newEvent("k2")
		b.insert(t, e1, e2)
		b.claim(t, "r1", 10, time.Minute)
		mustN(t, 2)(b.drv.EventMarkFailed(b.ctx, &outboxdriver.EventMarkFailedParams{RelayID: "r1", Failures: []outboxdriver.FailedAttempt{
			{ID: e1.ID, Error: "broker down", Delay: time.Hour},
			{ID: e2.ID, Error: "poison \xff", Dead: true},
		}}))
		r1 := b.get(t, e1.ID)
		if r1.Status != outboxdriver.StatusPending || r1.Attempts != 1 || r1.LastError != "broker down" || r1.LockedBy != "" ||
			time.Until(r1.NextAttemptAt) < 50*time.Minute {
			t.Fatalf("backoff: %+v", r1)
		}
		r2 := b.get(t, e2.ID)
		if r2.Status != outboxdriver.StatusDead || r2.Attempts != 1 || !strings.HasPrefix(r2.LastError, "poison") {
			t.Fatalf("dead: %+v", r2)
		}
		if got := b.claim(t, "r2", 10, time.Minute); len(got) != 0 {
			t.Fatalf("claimed %v", ids(got))
		}
		mustN(t, 0)(b.drv.EventMarkFailed(b.ctx, &outboxdriver.EventMarkFailedParams{RelayID: "r1", Failures: []outboxdriver.FailedAttempt{{ID: e1.ID, Error: "x"}}}))
	})
	t.Run("Release", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		e := newEvent("k")
		b.insert(t, e)
		b.claim(t, "r1", 10, time.Hour)
		mustN(t, 0)(b.drv.EventRelease(b.ctx, &outboxdriver.EventReleaseParams{RelayID: "r2", IDs: []string{e.ID}}))
		mustN(t, 1)(b.drv.EventRelease(b.ctx, &outboxdriver.EventReleaseParams{RelayID: "r1", IDs: []string{e.ID}}))
		r := b.get(t, e.ID)
		if r.Attempts != 0 || r.LockedBy != "" || r.LockedUntil != nil || r.Status != outboxdriver.StatusPending {
			t.Fatalf("%+v", r)
		}
		if got := b.claim(t, "r2", 10, time.Hour); len(got) != 1 {
			t.Fatal("released event not claimable")
		}
	})
}

func TestAdmin(t *testing.T) {
	t.Parallel()
	t.Run("Retry", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		dead1, dead2, delivered, leased := newEvent("a"), newEvent("b"), newEvent("c"), newEvent("d")
		dead2.Type = "other.type"
		b.insert(t, dead1, dead2, delivered, leased)
		b.claim(t, "r1", 10, time.Hour)
		mustN(t, 2)(b.drv.EventMarkFailed(b.ctx, &outboxdriver.EventMarkFailedParams{RelayID: "r1", Failures: []outboxdriver.FailedAttempt{
			{ID: dead1.ID, Error: "x", Dead: true}, {ID: dead2.ID, Error: "y", Dead: true}}}))
		mustN(t, 1)(b.drv.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r1", IDs: []string{delivered.ID}}))

		mustN(t, 1)(b.drv.EventRetry(b.ctx, &outboxdriver.EventRetryParams{AllDead: true, Type: "other.type"}))
		mustN(t, 1)(b.drv.EventRetry(b.ctx, &outboxdriver.EventRetryParams{AllDead: true}))
		// A leased pending event is left alone; a delivered one is resent.
		mustN(t, 1)(b.drv.EventRetry(b.ctx, &outboxdriver.EventRetryParams{IDs: []string{delivered.ID, leased.ID, uuid.NewString()}}))
		for _, id := range []string{dead1.ID, dead2.ID, delivered.ID} {
			r := b.get(t, id)
			if r.Status != outboxdriver.StatusPending || r.Attempts != 0 || r.LockedBy != "" {
				t.Fatalf("not retried: %+v", r)
			}
		}
		if r := b.get(t, leased.ID); r.LockedBy != "r1" {
			t.Fatalf("leased event touched: %+v", r)
		}
		got := b.claim(t, "r2", 10, time.Hour)
		if !slices.Equal(ids(got), []string{dead1.ID, dead2.ID, delivered.ID}) {
			t.Fatalf("claimed %v", ids(got))
		}
	})
	t.Run("PurgeStatsList", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var events []outboxdriver.InsertEvent
		for i := range 10 {
			e := newEvent(fmt.Sprint("k", i%2))
			if i == 9 {
				e.Type = "special"
			}
			events = append(events, e)
		}
		b.insert(t, events...)
		st, err := b.drv.EventStats(b.ctx, &outboxdriver.EventStatsParams{})
		if err != nil || st.Pending != 10 || st.Dead != 0 || !st.OldestPending.Equal(events[0].CreatedAt) || time.Since(st.Now).Abs() > time.Minute {
			t.Fatalf("stats %+v, %v", st, err)
		}
		b.claim(t, "r1", 6, time.Hour)
		mustN(t, 5)(b.drv.EventMarkDelivered(b.ctx, &outboxdriver.EventMarkDeliveredParams{RelayID: "r1", IDs: ids2(events[:5])}))
		mustN(t, 1)(b.drv.EventMarkFailed(b.ctx, &outboxdriver.EventMarkFailedParams{RelayID: "r1", Failures: []outboxdriver.FailedAttempt{{ID: events[5].ID, Error: "x", Dead: true}}}))
		st, err = b.drv.EventStats(b.ctx, &outboxdriver.EventStatsParams{})
		if err != nil || st.Pending != 4 || st.Dead != 1 || st.DeliveredLastMinute != 5 || !st.OldestPending.Equal(events[6].CreatedAt) {
			t.Fatalf("stats %+v, %v", st, err)
		}

		list := func(p outboxdriver.EventListParams) []string {
			t.Helper()
			if p.Limit == 0 {
				p.Limit = 100
			}
			rows, err := b.drv.EventList(b.ctx, &p)
			if err != nil {
				t.Fatal(err)
			}
			return ids(rows)
		}
		if got := list(outboxdriver.EventListParams{Status: outboxdriver.StatusDelivered}); !slices.Equal(got, ids2(events[:5])) {
			t.Fatalf("delivered list %v", got)
		}
		if got := list(outboxdriver.EventListParams{Status: outboxdriver.StatusPending, Key: "k1"}); !slices.Equal(got, []string{events[7].ID, events[9].ID}) {
			t.Fatalf("pending k1 list %v", got)
		}
		if got := list(outboxdriver.EventListParams{Type: "special"}); !slices.Equal(got, []string{events[9].ID}) {
			t.Fatalf("type list %v", got)
		}
		page1, _ := b.drv.EventList(b.ctx, &outboxdriver.EventListParams{Limit: 4})
		if got := list(outboxdriver.EventListParams{AfterSeq: page1[3].Seq, Limit: 3}); !slices.Equal(got, ids2(events[4:7])) {
			t.Fatalf("page 2 %v", got)
		}
		if got := list(outboxdriver.EventListParams{Since: time.Now().Add(time.Hour)}); len(got) != 0 {
			t.Fatalf("since future %v", got)
		}
		if got := list(outboxdriver.EventListParams{Since: events[0].CreatedAt, Until: time.Now().Add(time.Hour)}); len(got) != 10 {
			t.Fatalf("since/until %v", got)
		}
		full, _ := b.drv.EventList(b.ctx, &outboxdriver.EventListParams{Status: outboxdriver.StatusDead, Limit: 10})
		if len(full) != 1 || full[0].LastError != "x" || full[0].Attempts != 1 {
			t.Fatalf("dead row %+v", full)
		}

		// Purge deletes delivered events older than Before only, in batches.
		mustN(t, 0)(b.drv.EventPurge(b.ctx, &outboxdriver.EventPurgeParams{Before: time.Now().Add(-time.Hour), Limit: 100}))
		mustN(t, 3)(b.drv.EventPurge(b.ctx, &outboxdriver.EventPurgeParams{Before: time.Now().Add(time.Minute), Limit: 3}))
		mustN(t, 2)(b.drv.EventPurge(b.ctx, &outboxdriver.EventPurgeParams{Before: time.Now().Add(time.Minute), Limit: 3}))
		mustN(t, 0)(b.drv.EventPurge(b.ctx, &outboxdriver.EventPurgeParams{Before: time.Now().Add(time.Minute), Limit: 3}))
		if got := list(outboxdriver.EventListParams{}); len(got) != 5 {
			t.Fatalf("after purge %d events, want 4 pending + 1 dead", len(got))
		}
	})
}
