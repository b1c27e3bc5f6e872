package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

var (
	sharedOnce sync.Once
	sharedDB   *sql.DB
	sharedErr  error
)

// testDB returns one database handle shared by the package's tests.
func testDB(t testing.TB) *sql.DB {
	t.Helper()
	outboxtest.RequireService(t, outboxtest.MySQL)
	sharedOnce.Do(func() {
		sharedDB, sharedErr = Open(outboxtest.MySQLDSN())
		if sharedErr == nil {
			sharedDB.SetMaxOpenConns(60)
			sharedDB.SetMaxIdleConns(60)
		}
	})
	if sharedErr != nil {
		t.Fatalf("open: %v", sharedErr)
	}
	return sharedDB
}

type bundle struct {
	ctx context.Context
	db  *sql.DB
	drv *Driver
}

// setup returns a migrated driver on a fresh table, dropped at cleanup.
func setup(t testing.TB) *bundle {
	t.Helper()
	b := setupUnmigrated(t)
	if err := b.drv.MigrateUp(b.ctx, &outboxdriver.MigrateUpParams{}); err != nil {
		t.Fatalf("MigrateUp: %v", err)
	}
	return b
}

func setupUnmigrated(t testing.TB) *bundle {
	t.Helper()
	db := testDB(t)
	table := outboxtest.UniqueName("ob")
	drv, err := New(db, Config{Table: table})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		for _, tb := range []string{drv.table, drv.lockTable, drv.verTable} {
			if _, err := db.Exec("DROP TABLE IF EXISTS " + tb); err != nil {
				t.Errorf("drop %s: %v", tb, err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &bundle{ctx: ctx, db: db, drv: drv}
}

func newEvent(key string) outboxdriver.InsertEvent {
	id, _ := uuid.NewV7()
	return outboxdriver.InsertEvent{
		ID: id.String(), Type: "test.happened", Topic: "topic", Key: key,
		Payload: []byte(`{"n":1}`), Headers: []byte(`{"h":"v"}`),
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
	}
}

// insert commits events in one transaction.
func (b *bundle) insert(t testing.TB, events ...outboxdriver.InsertEvent) {
	t.Helper()
	tx, err := b.db.BeginTx(b.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.drv.EventInsert(b.ctx, &outboxdriver.EventInsertParams{Tx: tx, Events: events}); err != nil {
		_ = tx.Rollback()
		t.Fatalf("EventInsert: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) get(t testing.TB, id string) *outboxdriver.EventRow {
	t.Helper()
	r, err := b.drv.EventGet(b.ctx, &outboxdriver.EventGetParams{ID: id})
	if err != nil {
		t.Fatalf("EventGet %s: %v", id, err)
	}
	return r
}

// exec runs a statement on the test's table ({T} is replaced).
func (b *bundle) exec(t testing.TB, query string, args ...any) {
	t.Helper()
	if _, err := b.db.ExecContext(b.ctx, fmt.Sprintf(query, b.drv.table), args...); err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
}

func ids(rows []*outboxdriver.EventRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}

func keys(rows []*outboxdriver.EventRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Key
	}
	return out
}

// tableCount returns how many tables of the connection's database are
// named name (0 or 1).
func (b *bundle) tableCount(t testing.TB, name string) int {
	t.Helper()
	var n int
	if err := b.db.QueryRowContext(b.ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
