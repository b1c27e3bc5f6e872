// Package consoletest is the shared test of the queries the web console
// (package outboxui) runs on a driver: the List filters by topic and last
// error, Outbox.DeadGroups, Outbox.RetryDeadMatching and, for drivers that
// implement outboxdriver.Inspector, Outbox.Activity. Every driver runs it on
// its real database, so the check is written once.
package consoletest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// Dialect is what the check needs from the driver's test: ways to put an
// event in a state the relay would have written.
type Dialect struct {
	// DB is the database the Outbox writes to.
	DB *sql.DB
	// Outbox is on a fresh, migrated table.
	Outbox *outbox.Outbox
	// MarkDead sets the event dead with the given last error.
	MarkDead func(id, lastError string) error
	// MarkDelivered sets the event delivered at delivered, created at
	// created (both UTC).
	MarkDelivered func(id string, created, delivered time.Time) error
}

// Run runs the check twice, each time on a fresh table from setup: once on
// the driver as it is, once with its outboxdriver.Inspector hidden (the
// Outbox's fallbacks a third-party driver gets).
func Run(t *testing.T, setup func(t *testing.T) Dialect) {
	t.Run("driver", func(t *testing.T) { check(t, setup(t)) })
	t.Run("without_inspector", func(t *testing.T) {
		d := setup(t)
		ob, err := outbox.New(plainDriver{d.Outbox.Driver()}, outbox.Config{})
		if err != nil {
			t.Fatal(err)
		}
		d.Outbox = ob
		check(t, d)
	})
}

// plainDriver hides every optional interface of the driver it wraps.
type plainDriver struct{ outboxdriver.Driver }

func check(t *testing.T, d Dialect) {
	t.Helper()
	ctx := context.Background()
	ob := d.Outbox
	topics := []string{"t1", "t1", "t2", "t2", "t2", "t3", "t1"}
	types := []string{"x", "y", "x", "y", "y", "x", "y"}
	events := make([]*outbox.Event, len(topics))
	tx, err := d.DB.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range events {
		events[i] = &outbox.Event{Type: types[i], Topic: topics[i], Key: fmt.Sprintf("k%d", i), Payload: []byte("{}")}
	}
	if err := ob.Insert(ctx, tx, events...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	id := func(i int) string { return events[i].ID }
	errA, errB := "broker: <nack> 'queue full'", "timeout"
	for i, e := range map[int]string{0: errA, 2: errA, 3: errB, 5: errA} {
		if err := d.MarkDead(id(i), e); err != nil {
			t.Fatalf("mark dead: %v", err)
		}
	}
	minute := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Minute)
	delivered := minute.Add(10 * time.Second)
	if err := d.MarkDelivered(id(6), delivered.Add(-1500*time.Millisecond), delivered); err != nil {
		t.Fatalf("mark delivered: %v", err)
	}

	list := func(f outbox.ListFilter) []string {
		t.Helper()
		page, err := ob.List(ctx, f)
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		var out []string
		for _, e := range page.Events {
			out = append(out, e.ID)
		}
		return out
	}
	for _, c := range []struct {
		name string
		f    outbox.ListFilter
		want []string
	}{
		{"topic", outbox.ListFilter{Topic: "t2"}, []string{id(2), id(3), id(4)}},
		{"last error", outbox.ListFilter{LastError: errA}, []string{id(0), id(2), id(5)}},
		{"topic and last error", outbox.ListFilter{Topic: "t1", LastError: errA}, []string{id(0)}},
		{"topic and status", outbox.ListFilter{Topic: "t1", Status: outbox.StatusDelivered}, []string{id(6)}},
		{"unknown topic", outbox.ListFilter{Topic: "t1' OR '1'='1"}, nil},
	} {
		if got := list(c.f); !slices.Equal(got, c.want) {
			t.Errorf("List %s: got %v, want %v", c.name, got, c.want)
		}
	}

	groups, err := ob.DeadGroups(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if groups.Partial || len(groups.Groups) != 2 {
		t.Fatalf("DeadGroups: %+v", groups)
	}
	a, b := groups.Groups[0], groups.Groups[1]
	if a.LastError != errA || a.Count != 3 || a.Types != 1 || b.LastError != errB || b.Count != 1 || b.Types != 1 {
		t.Fatalf("DeadGroups: %+v", groups.Groups)
	}
	if a.Oldest.IsZero() || a.Newest.Before(a.Oldest) {
		t.Fatalf("DeadGroups bounds: %+v", a)
	}

	rows, err := ob.Activity(ctx, time.Now().Add(-time.Hour), 0)
	if _, ok := ob.Driver().(outboxdriver.Inspector); !ok {
		if !errors.Is(err, outbox.ErrNotSupported) {
			t.Fatalf("Activity without Inspector: %v, want ErrNotSupported", err)
		}
	} else {
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 {
			t.Fatalf("Activity: %+v", rows)
		}
		r := rows[0]
		if !r.Minute.Equal(minute) || r.Topic != "t1" || r.Type != "y" || r.Delivered != 1 || math.Abs(r.LagSeconds-1.5) > 0.001 {
			t.Fatalf("Activity row %+v, want minute %s t1/y 1 event lag 1.5s", r, minute)
		}
	}

	n, err := ob.RetryDeadMatching(ctx, outbox.ListFilter{LastError: errA, Limit: 1})
	if err != nil || n != 3 {
		t.Fatalf("RetryDeadMatching: %d, %v; want 3", n, err)
	}
	if got := list(outbox.ListFilter{Status: outbox.StatusDead}); !slices.Equal(got, []string{id(3)}) {
		t.Fatalf("dead after retrying the group: %v, want only %s", got, id(3))
	}
	if got := list(outbox.ListFilter{Status: outbox.StatusPending, LastError: errA}); len(got) != 3 {
		t.Fatalf("retried events: %v", got)
	}
}
