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
	_, err = b.drv.EventClaimHeld(b.ctx, &outboxdriver.EventClaimBatchParams{RelayID: "r", Limit: 10})
	if !errors.Is(err, outboxdriver.ErrNotMigrated) {
		t.Fatalf("EventClaimHeld: want ErrNotMigrated, got %v", err)
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
	if err != nil || len(st.Applied) != 0 || !slices.Equal(st.Pending, []int{1, 2, 3, 4}) {
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
		if err != nil || !slices.Equal(st.Applied, []int{1, 2, 3, 4}) || len(st.Pending) != 0 {
			t.Fatalf("MigrateStatus = %+v, %v", st, err)
		}
		if n := b.tableCount(t, b.drv.cfg.Table+"_relay_lock"); n != 0 {
			t.Fatalf("%s_relay_lock still exists after migrating", b.drv.cfg.Table)
		}
	})
	t.Run("UpgradeFromVersion2DropsRelayLock", func(t *testing.T) {
		// An install at schema version 2 has the relay lock table (and its
		// row); version 3 drops it, and Ping reports the pending version
		// until then without reading that table.
		t.Parallel()
		b := setup(t)
		if _, err := b.db.ExecContext(b.ctx, "DELETE FROM "+b.drv.verTable+" WHERE version = 3"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.db.ExecContext(b.ctx, "CREATE TABLE "+b.drv.lockTable+" (id INT NOT NULL PRIMARY KEY) ENGINE=InnoDB"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.db.ExecContext(b.ctx, "INSERT INTO "+b.drv.lockTable+" (id) VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		if err := b.drv.Ping(b.ctx); !errors.Is(err, outboxdriver.ErrNotMigrated) || !strings.Contains(err.Error(), "[3]") {
			t.Fatalf("Ping at version 2: want ErrNotMigrated naming version 3, got %v", err)
		}
		if err := b.drv.MigrateUp(b.ctx, &outboxdriver.MigrateUpParams{}); err != nil {
			t.Fatal(err)
		}
		if n := b.tableCount(t, b.drv.cfg.Table+"_relay_lock"); n != 0 {
			t.Fatal("migration 3 left the relay lock table")
		}
		if err := b.drv.Ping(b.ctx); err != nil {
			t.Fatalf("Ping after migration 3: %v", err)
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
		if err := b.db.QueryRow("SELECT COUNT(*) FROM " + b.drv.verTable).Scan(&n); err != nil || n != 4 {
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
