package conformance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// C5 Failure isolation.
func c5Tests() []namedTest {
	return []namedTest{
		{"poison_event_dead_others_flow", testPoison},
		{"insert_never_waits_for_a_stuck_relay", testInsertNotBlocked},
	}
}

func testPoison(t *testing.T, h Harness) {
	e := setup(t, h)
	poison := e.event("poison", 0)
	follower := e.event("poison", 1) // same key: waits until poison is dead
	var attempts atomic.Int64
	before := func(m *message.Message) error {
		if m.UUID == poison.ID {
			attempts.Add(1)
			return fmt.Errorf("%w: schema mismatch for %s", errInjected, m.UUID)
		}
		return nil
	}
	e.relay(nil, &tap{inner: e.broker.NewPublisher(t, ""), before: before},
		outbox.RelayConfig{MaxAttempts: 3, BackoffMin: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond})
	e.insert(t, poison, follower)
	var others []*outbox.Event
	for i := range 20 {
		others = append(others, e.event(fmt.Sprintf("ok%d", i), i))
	}
	e.insert(t, others...)
	eventually(t, "other keys and the poison key's follower delivered", hangGuard, func() bool {
		return e.got.hasAll(append(ids(others), follower.ID))
	})
	eventually(t, "poison event dead", hangGuard, func() bool { return e.get(t, poison.ID).Status == outbox.StatusDead })
	st := e.get(t, poison.ID)
	if st.Attempts != 3 || !strings.Contains(st.LastError, "schema mismatch") {
		t.Fatalf("dead event: attempts=%d last_error=%q, want 3 and the broker's error", st.Attempts, st.LastError)
	}
	if n := attempts.Load(); n != 3 {
		t.Fatalf("poison event attempted %d times, want MaxAttempts 3", n)
	}
	if n := e.got.count(poison.ID); n != 0 {
		t.Fatalf("poison event reached the broker %d times", n)
	}
	// The follower reached the broker before its delivery was recorded:
	// wait for the record, then nothing else may be left pending.
	eventually(t, "follower recorded delivered", hangGuard, func() bool {
		ok, _ := e.delivered(t, follower.ID)
		return ok
	})
	if s := e.stats(t); s.Dead != 1 || s.Pending != 0 {
		t.Fatalf("stats: dead=%d pending=%d, want 1 and 0", s.Dead, s.Pending)
	}
}

// testInsertNotBlocked holds a relay inside Publish (a hanging broker) with
// its batch claimed, then runs application INSERTs on a session whose lock
// wait is limited to about a second: any lock the relay holds that the
// writer path can queue behind fails the INSERT. A second relay must keep
// delivering new events meanwhile.
func testInsertNotBlocked(t *testing.T, h Harness) {
	if h.Database.LockTimeout == "" {
		skipf(t, "database %s: no LockTimeout statement", h.Database.Name)
	}
	e := setup(t, h)
	hang := make(chan struct{})
	var stuck atomic.Int64
	hanging := func(m *message.Message) error {
		stuck.Add(1)
		<-hang
		return errInjected
	}
	// One batch in flight: a stuck relay with Concurrency N would also
	// claim, and hold until PublishTimeout, the fresh events below.
	e.relay(nil, &tap{inner: e.broker.NewPublisher(t, ""), before: hanging},
		outbox.RelayConfig{ID: "stuck", PublishTimeout: 5 * time.Minute, ShutdownTimeout: time.Second, Concurrency: 1})
	t.Cleanup(func() { close(hang) }) // registered after the relay: runs before its stop
	var held []*outbox.Event
	for i := range 50 {
		held = append(held, e.event("stuck", i))
	}
	held = append(held, e.event("stuck-other", 0))
	e.insert(t, held...)
	eventually(t, "the stuck relay holding its claim inside Publish", hangGuard, func() bool { return stuck.Load() >= 2 })

	healthyAcks := &ackLog{}
	e.relay(nil, &tap{inner: e.broker.NewPublisher(t, ""), log: healthyAcks}, outbox.RelayConfig{ID: "healthy"})

	ctx := context.Background()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, h.Database.LockTimeout); err != nil {
		t.Fatalf("%s: %v", h.Database.LockTimeout, err)
	}
	var fresh []string
	var worst, sum time.Duration
	const n = 30
	for i := range n {
		// The same key as the stuck events, and a new one.
		ev := e.event([]string{"stuck", fmt.Sprintf("fresh-%d", i)}[i%2], 100+i)
		start := time.Now()
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ob.Insert(ctx, tx, ev); err != nil {
			_ = tx.Rollback()
			t.Fatalf("INSERT while a relay is stuck on the broker: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("COMMIT while a relay is stuck on the broker: %v", err)
		}
		d := time.Since(start)
		worst, sum = max(worst, d), sum+d
		if ev.Key != "stuck" {
			fresh = append(fresh, ev.ID)
		}
	}
	t.Logf("insert+commit while a relay is stuck on a hanging broker: mean %s, worst %s (measured, not asserted)", sum/n, worst)
	if h.Database.OneRelayStreams {
		skipf(t, "database %s: one relay streams at a time, the other is a hot standby that cannot take keys over from a live, stuck one (the INSERTs above did not wait)", h.Database.Name)
	}
	eventually(t, "the healthy relay delivering other keys", hangGuard, func() bool { return e.got.hasAll(fresh) })
	for _, ev := range held {
		if e.got.count(ev.ID) != 0 && ev.Key == "stuck" {
			byHealthy := slices.ContainsFunc(healthyAcks.snapshot(), func(a ack) bool { return a.id == ev.ID })
			row, err := e.ob.Get(ctx, ev.ID)
			t.Fatalf("an event held by the stuck relay was delivered (published by the healthy relay: %v): %s; row now %+v (err %v)",
				byHealthy, ev.ID, row, err)
		}
	}
}

// C6 Visible state and operator actions.
func c6Tests() []namedTest {
	return []namedTest{
		{"status_fields_and_list", testStatusFields},
		{"retry_dead_redelivers", testRetryDead},
		{"purge_keeps_undelivered", testPurge},
	}
}

func testStatusFields(t *testing.T, h Harness) {
	e := setup(t, h)
	ev := e.event("k", 1)
	e.insert(t, ev)
	st := e.get(t, ev.ID)
	if st.Status != outbox.StatusPending || st.Attempts != 0 || st.CreatedAt.IsZero() || st.DeliveredAt != nil || st.LastError != "" {
		t.Fatalf("new event: %+v", st)
	}
	e.relay(nil, e.broker.NewPublisher(t, ""), outbox.RelayConfig{})
	e.waitAllDelivered(t, []string{ev.ID}, hangGuard)
	ok, st := e.delivered(t, ev.ID)
	if !ok || (st != nil && (st.Attempts != 1 || st.DeliveredAt == nil || st.DeliveredAt.Before(st.CreatedAt.Add(-time.Second)))) {
		t.Fatalf("delivered event: %+v (deletes delivered: %v)", st, h.Database.DeletesDelivered)
	}
	page, err := e.ob.List(context.Background(), outbox.ListFilter{Status: outbox.StatusDelivered})
	want := 1
	if h.Database.DeletesDelivered {
		want = 0
	}
	if err != nil || len(page.Events) != want || (want == 1 && page.Events[0].ID != ev.ID) {
		t.Fatalf("list delivered (want %d): %v %+v", want, err, page)
	}
}

// deadEvent makes one event dead through a relay whose broker rejects it,
// then stops that relay.
func (e *env) deadEvent(t *testing.T) *outbox.Event {
	ev := e.event("dead", 0)
	reject := func(m *message.Message) error {
		if m.UUID == ev.ID {
			return fmt.Errorf("%w: rejected", errInjected)
		}
		return nil
	}
	stop := e.relay(nil, &tap{inner: e.broker.NewPublisher(t, ""), before: reject}, outbox.RelayConfig{MaxAttempts: 1})
	e.insert(t, ev)
	eventually(t, "event dead", hangGuard, func() bool { return e.get(t, ev.ID).Status == outbox.StatusDead })
	stop()
	return ev
}

func testRetryDead(t *testing.T, h Harness) {
	e := setup(t, h)
	ev := e.deadEvent(t)
	if st := e.get(t, ev.ID); st.LastError == "" || st.Attempts != 1 {
		t.Fatalf("dead event: attempts=%d last_error=%q", st.Attempts, st.LastError)
	}
	e.relay(nil, e.broker.NewPublisher(t, ""), outbox.RelayConfig{})
	n, err := e.ob.RetryDead(context.Background(), "")
	if err != nil || n != 1 {
		t.Fatalf("retry dead: n=%d err=%v", n, err)
	}
	e.waitAllDelivered(t, []string{ev.ID}, hangGuard)
	if ok, st := e.delivered(t, ev.ID); !ok {
		t.Fatalf("after retry: %+v", st)
	}
	if s := e.stats(t); s.Dead != 0 {
		t.Fatalf("dead = %d after retry", s.Dead)
	}
}

func testPurge(t *testing.T, h Harness) {
	e := setup(t, h)
	dead := e.deadEvent(t)
	stop := e.relay(nil, e.broker.NewPublisher(t, ""), outbox.RelayConfig{})
	var delivered []*outbox.Event
	for i := range 12 {
		delivered = append(delivered, e.event("", i))
	}
	e.insert(t, delivered...)
	e.waitAllDelivered(t, ids(delivered), hangGuard)
	stop()
	pending := e.event("", 99)
	e.insert(t, pending) // no relay runs: stays pending
	purged, err := e.ob.Purge(context.Background(), 0, outbox.PurgeOptions{BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	wantPurged := int64(len(delivered))
	if h.Database.DeletesDelivered {
		wantPurged = 0 // the relay already deleted them
	}
	if purged != wantPurged {
		t.Fatalf("purged %d, want %d", purged, wantPurged)
	}
	for _, keep := range []*outbox.Event{dead, pending} {
		if _, err := e.ob.Get(context.Background(), keep.ID); err != nil {
			t.Fatalf("purge removed an undelivered event %s: %v", keep.ID, err)
		}
	}
	if _, err := e.ob.Get(context.Background(), delivered[0].ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("delivered event not purged: %v", err)
	}
}

// C7 Bad input fails early and clearly.
func c7Tests() []namedTest {
	return []namedTest{
		{"invalid_table_names", testInvalidTables},
		{"unreachable_dsn", testUnreachableDSN},
		{"oversized_event_fails_in_the_callers_tx", testOversized},
		{"invalid_relay_config", testInvalidRelayConfig},
		{"hostile_rows_never_stall_the_relay", testHostileRows},
	}
}

func testInvalidTables(t *testing.T, h Harness) {
	for _, name := range []string{`out"box`, "out box", "1outbox", "a;DROP TABLE x", "tbl.name", strings.Repeat("t", 70)} {
		_, err := h.Database.NewDriver(nil, name)
		if err == nil {
			// Drivers may check the db handle first; give them a real one.
			db := openDB(t, h, h.Database.DSN)
			_, err = h.Database.NewDriver(db, name)
		}
		if !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("table %q: want ErrInvalidConfig, got %v", name, err)
			continue
		}
		if !strings.Contains(err.Error(), "Table") && !strings.Contains(err.Error(), "db") {
			t.Errorf("table %q: error does not name the field: %v", name, err)
		}
	}
	// A valid name still works, so the check is not "reject everything".
	db := openDB(t, h, h.Database.DSN)
	if _, err := h.Database.NewDriver(db, "valid_outbox_name"); err != nil {
		t.Fatalf("valid table name rejected: %v", err)
	}
}

func testUnreachableDSN(t *testing.T, h Harness) {
	if h.Database.DSNVia == nil {
		skipf(t, "database %s: no DSNVia", h.Database.Name)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	deadDSN := h.Database.DSNVia(dead)
	db := openDB(t, h, deadDSN)
	drv := newDriverAt(t, h, db, deadDSN, "unreachable_outbox")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = drv.MigrateUp(ctx, &outboxdriver.MigrateUpParams{})
	var netErr net.Error
	if err == nil || ctx.Err() != nil || !errors.As(err, &netErr) {
		t.Fatalf("migrate on an unreachable database: want a prompt net.Error, got %v (ctx %v)", err, ctx.Err())
	}
	ob, _ := outbox.New(drv, outbox.Config{})
	if _, err := ob.Stats(ctx); err == nil || !errors.As(err, &netErr) {
		t.Fatalf("stats on an unreachable database: want a net.Error, got %v", err)
	}
	t.Logf("unreachable database error: %v", err)
}

func testOversized(t *testing.T, h Harness) {
	e := setup(t, h)
	ob, err := outbox.New(e.drv, outbox.Config{MaxPayloadBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx, err := e.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	ok := e.event("k", 1)
	big := e.event("k", 2)
	big.Payload = make([]byte, 1025)
	err = ob.Insert(ctx, tx, ok, big)
	var ee *outbox.EventError
	if !errors.As(err, &ee) || !errors.Is(err, outbox.ErrEventTooLarge) || ee.Field != "Payload" || ee.Index != 1 {
		t.Fatalf("oversized event: want *EventError{Index 1, Field Payload} wrapping ErrEventTooLarge, got %v", err)
	}
	// Nothing of the call was written and the caller's tx still works.
	if err := ob.Insert(ctx, tx, ok); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if s := e.stats(t); s.Pending != 1 {
		t.Fatalf("pending = %d, want only the valid event", s.Pending)
	}
	if _, err := outbox.New(e.drv, outbox.Config{MaxPayloadBytes: -1}); !errors.Is(err, outbox.ErrInvalidConfig) ||
		!strings.Contains(err.Error(), "MaxPayloadBytes") {
		t.Fatalf("negative MaxPayloadBytes: %v", err)
	}
}

func testInvalidRelayConfig(t *testing.T, h Harness) {
	e := setup(t, h)
	pub := e.broker.NewPublisher(t, "")
	for field, cfg := range map[string]outbox.RelayConfig{
		"BatchSize":     {BatchSize: -1},
		"LeaseDuration": {LeaseDuration: time.Millisecond},
		"MaxAttempts":   {MaxAttempts: -2},
		"BackoffMax":    {BackoffMin: time.Second, BackoffMax: time.Millisecond},
	} {
		_, err := outbox.NewRelay(e.drv, pub, cfg)
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: want ErrInvalidConfig naming the field, got %v", field, err)
		}
	}
}
