package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// TestPgxStdlib runs the write, relay and admin paths through pgx's
// database/sql driver instead of lib/pq.
func TestPgxStdlib(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.Postgres)
	db, err := sql.Open("pgx", outboxtest.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	table := outboxtest.UniqueName("pgx")
	t.Cleanup(func() {
		_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_acks"`)
	})
	drv, err := postgres.New(db, postgres.Config{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := drv.MigrateUp(ctx, &outboxdriver.MigrateUpParams{}); err != nil {
		t.Fatal(err)
	}
	ob, _ := outbox.New(drv, outbox.Config{})
	b := &bundle{db: db, drv: drv, ob: ob}
	var events []*outbox.Event
	for i := range 30 {
		events = append(events, ev(fmt.Sprint(i%3), i))
	}
	b.insert(t, events...)

	rec := newRecorder()
	rec.failFn = nil
	stop := runRelay(t, b, rec, outbox.RelayConfig{})
	eventually(t, "delivered", func() bool { _, d := rec.count(); return d == 30 })
	eventually(t, "marked", func() bool { return b.stats(t).Pending == 0 })
	stop()
	got, err := ob.Get(ctx, events[0].ID)
	if err != nil || got.Status != outbox.StatusDelivered || got.DeliveredAt == nil {
		t.Fatalf("get: %+v %v", got, err)
	}
	page, err := ob.List(ctx, outbox.ListFilter{Status: outbox.StatusDelivered, Key: "1"})
	if err != nil || len(page.Events) != 10 {
		t.Fatalf("list: %d %v", len(page.Events), err)
	}
	if m, err := ob.Retry(ctx, events[0].ID); err != nil || m != 1 {
		t.Fatalf("retry: %d %v", m, err)
	}
	if m, err := ob.Purge(ctx, 0, outbox.PurgeOptions{}); err != nil || m != 29 {
		t.Fatalf("purge: %d %v", m, err)
	}
}
