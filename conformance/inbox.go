package conformance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	bnats "github.com/outboxkit/outboxkit/brokers/nats"
	"github.com/outboxkit/outboxkit/framework/inbox"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// RunInbox proves the consumer side of the contract (package inbox) on db
// end to end with a real broker, NATS JetStream at outboxtest.NATSURL
// (through brokers/nats, a fresh stream per test):
//
//   - each_effect_once: events are inserted through the outbox and
//     published by a relay; 4 consumer instances (4 independent durable
//     JetStream consumers on the stream, so each instance receives every
//     event, all with the same inbox Consumer name) process them
//     concurrently through inbox.Middleware, and every instance gets every
//     event 3 times: a middleware outside the inbox returns an error for
//     the first two deliveries, after the inbox transaction committed, so
//     Watermill nacks and JetStream redelivers (Nak). 12 deliveries per
//     event; the business table shows each effect exactly once.
//   - handler_error_then_redelivery: the handler writes its effect and then
//     fails twice per event; the inbox rolls back effect and record, the
//     broker redelivers, and the effect is applied exactly once.
//
// The business table has no unique constraint, so a repeated effect shows
// as a second row. It needs the Dialect registered for db.Name (built in
// for "postgres" and "mysql") and a driver implementing
// outboxdriver.Inbox; otherwise the test is skipped.
func RunInbox(t *testing.T, db Database) {
	outboxtest.RequireService(t, append(slices.Clone(db.Services), outboxtest.NATS)...)
	if db.NewDriver == nil || db.DriverName == "" {
		t.Fatal("conformance: Database needs DriverName and NewDriver")
	}
	dialectOf(t, db)
	t.Run("each_effect_once_over_3_deliveries_to_4_consumers", func(t *testing.T) {
		t.Parallel()
		testInboxRedelivery(t, db)
	})
	t.Run("handler_error_then_redelivery_applies_once", func(t *testing.T) {
		t.Parallel()
		testInboxHandlerError(t, db)
	})
}

// inboxEnv is one inbox test's world: an outbox table with its relay to a
// fresh NATS stream, and a business table.
type inboxEnv struct {
	t       *testing.T
	db      Database
	d       Dialect
	sqlDB   *sql.DB
	table   string
	effects string
	ob      *outbox.Outbox
	topic   string
}

func setupInbox(t *testing.T, db Database) *inboxEnv {
	h := Harness{Database: db}
	e := &inboxEnv{t: t, db: db, d: dialectOf(t, db), table: outboxtest.UniqueName("inbx")}
	e.effects = e.table + "_effects"
	e.sqlDB = openDB(t, h, db.DSN)
	drv := newDriver(t, h, e.sqlDB, e.table)
	ctx := context.Background()
	if err := drv.MigrateUp(ctx, &outboxdriver.MigrateUpParams{}); err != nil {
		t.Fatal(err)
	}
	if err := e.d.CreateEffects(e.sqlDB, e.effects); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.d.DropTables(e.sqlDB, e.effects, e.table+"_inbox"); err != nil {
			t.Logf("drop: %v", err)
		}
		if db.DropTable != nil {
			if err := db.DropTable(e.sqlDB, e.table); err != nil {
				t.Logf("drop: %v", err)
			}
		}
	})
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.ob = ob

	stream := outboxtest.UniqueName("inbx")
	e.topic = stream + ".events"
	cfg := bnats.Config{URL: outboxtest.NATSURL()}
	if err := bnats.EnsureStream(ctx, cfg, bnats.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteStream(t, stream) })
	pub, err := bnats.NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	relay, err := outbox.NewRelay(drv, pub, outbox.RelayConfig{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return e
}

func deleteStream(t *testing.T, stream string) {
	nc, err := nats.Connect(outboxtest.NATSURL())
	if err != nil {
		t.Logf("delete stream %s: %v", stream, err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, stream); err != nil {
		t.Logf("delete stream %s: %v", stream, err)
	}
}

// insertEvents commits n events through the outbox, 10 per transaction.
func (e *inboxEnv) insertEvents(n int) []string {
	var ids []string
	for i := 0; i < n; i += 10 {
		tx, err := e.sqlDB.Begin()
		if err != nil {
			e.t.Fatal(err)
		}
		var evs []*outbox.Event
		for j := i; j < min(n, i+10); j++ {
			evs = append(evs, &outbox.Event{Type: "conformance.inbox", Topic: e.topic, Key: fmt.Sprintf("k%d", j%7),
				Payload: fmt.Appendf(nil, `{"i":%d}`, j)})
		}
		if err := e.ob.Insert(context.Background(), tx, evs...); err != nil {
			_ = tx.Rollback()
			e.t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			e.t.Fatal(err)
		}
		for _, ev := range evs {
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

// consumer starts instance i: its own database handle, driver and inbox
// (Consumer "conformance", shared by all instances), a durable JetStream
// consumer of its own, and a Watermill router running handler wrapped as
// outer(inbox.Middleware(handler)).
func (e *inboxEnv) consumer(i int, outer func(message.NoPublishHandlerFunc) message.NoPublishHandlerFunc, handler message.NoPublishHandlerFunc) {
	t := e.t
	h := Harness{Database: e.db}
	db := openDB(t, h, e.db.DSN)
	in, err := inbox.New(newDriver(t, h, db, e.table), inbox.Config{Consumer: "conformance"})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub, err := bnats.NewSubscriber(bnats.Config{URL: outboxtest.NATSURL(), Durable: fmt.Sprintf("instance%d", i), AckWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddConsumerHandler(fmt.Sprintf("instance%d", i), e.topic, sub, outer(in.NoPublishMiddleware(handler)))
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = router.Close()
		<-done
		_ = sub.Close()
	})
	select {
	case <-router.Running():
	case err := <-done:
		t.Fatalf("router %d: %v", i, err)
	}
}

// applyEffect is the business handler: one row in the business table,
// written in the inbox transaction.
func (e *inboxEnv) applyEffect(instance int) message.NoPublishHandlerFunc {
	insert := e.d.InsertEffect(e.effects)
	return func(msg *message.Message) error {
		tx, ok := inbox.Tx(msg.Context())
		if !ok {
			return errors.New("no inbox transaction in the handler's context")
		}
		_, err := tx.ExecContext(msg.Context(), insert, msg.UUID, instance)
		return err
	}
}

// effectCounts returns how many business rows each event id has, and how
// many rows each instance wrote.
func (e *inboxEnv) effectCounts() (perEvent map[string]int, perInstance map[int]int) {
	rows, err := e.sqlDB.Query(`SELECT event_id, applied_by FROM ` + e.d.QuoteIdent(e.effects))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	perEvent, perInstance = map[string]int{}, map[int]int{}
	for rows.Next() {
		var id string
		var by int
		if err := rows.Scan(&id, &by); err != nil {
			e.t.Fatal(err)
		}
		perEvent[id]++
		perInstance[by]++
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return perEvent, perInstance
}

func (e *inboxEnv) checkOnce(ids []string) {
	t := e.t
	t.Helper()
	perEvent, perInstance := e.effectCounts()
	for _, id := range ids {
		if n := perEvent[id]; n != 1 {
			t.Errorf("event %s: effect applied %d times, want exactly 1", id, n)
		}
	}
	if len(perEvent) != len(ids) {
		t.Errorf("%d events have effects, want %d", len(perEvent), len(ids))
	}
	var inboxRows int
	if err := e.sqlDB.QueryRow(`SELECT COUNT(*) FROM ` + e.d.QuoteIdent(e.table+"_inbox")).Scan(&inboxRows); err != nil {
		t.Fatal(err)
	}
	if inboxRows != len(ids) {
		t.Errorf("%d inbox records, want %d (one per event for the single consumer name)", inboxRows, len(ids))
	}
	t.Logf("effects applied per instance: %v", perInstance)
}

// deliveryLog counts deliveries and acknowledgements per instance and event.
type deliveryLog struct {
	mu        sync.Mutex
	delivered []map[string]int
	acked     []map[string]bool
}

func newDeliveryLog(instances int) *deliveryLog {
	l := &deliveryLog{}
	for range instances {
		l.delivered = append(l.delivered, map[string]int{})
		l.acked = append(l.acked, map[string]bool{})
	}
	return l
}

func (l *deliveryLog) deliver(i int, id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delivered[i][id]++
	return l.delivered[i][id]
}

func (l *deliveryLog) ack(i int, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked[i][id] = true
}

func (l *deliveryLog) allAcked(ids []string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.acked {
		for _, id := range ids {
			if !m[id] {
				return false
			}
		}
	}
	return true
}

func (l *deliveryLog) minMaxDeliveries(ids []string) (lo, hi, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lo = -1
	for _, m := range l.delivered {
		for _, id := range ids {
			n := m[id]
			total += n
			if lo < 0 || n < lo {
				lo = n
			}
			hi = max(hi, n)
		}
	}
	return lo, hi, total
}

var errForcedRedelivery = errors.New("conformance: forced redelivery")

func testInboxRedelivery(t *testing.T, db Database) {
	e := setupInbox(t, db)
	const instances, deliveries = 4, 3
	n := scale(50, 150)
	log := newDeliveryLog(instances)
	for i := range instances {
		// outer sees the message after the inbox transaction committed (or
		// after the inbox skipped a duplicate) and nacks the first two
		// deliveries, so JetStream redelivers each event to each instance.
		outer := func(next message.NoPublishHandlerFunc) message.NoPublishHandlerFunc {
			return func(msg *message.Message) error {
				k := log.deliver(i, msg.UUID)
				if err := next(msg); err != nil {
					return err
				}
				if k < deliveries {
					return errForcedRedelivery
				}
				log.ack(i, msg.UUID)
				return nil
			}
		}
		e.consumer(i, outer, e.applyEffect(i))
	}
	ids := e.insertEvents(n)
	eventually(t, "every instance acknowledged every event", hangGuard, func() bool { return log.allAcked(ids) })
	lo, hi, total := log.minMaxDeliveries(ids)
	t.Logf("%d events × %d instances: %d deliveries (per instance and event: min %d, max %d)", n, instances, total, lo, hi)
	if lo < deliveries {
		t.Errorf("an instance received an event only %d times, want at least %d", lo, deliveries)
	}
	e.checkOnce(ids)
}

func testInboxHandlerError(t *testing.T, db Database) {
	e := setupInbox(t, db)
	const instances, failuresPerEvent = 2, 2
	n := scale(30, 60)
	log := newDeliveryLog(instances)
	var mu sync.Mutex
	failed := map[string]int{}
	runs := map[string]int{}
	for i := range instances {
		outer := func(next message.NoPublishHandlerFunc) message.NoPublishHandlerFunc {
			return func(msg *message.Message) error {
				log.deliver(i, msg.UUID)
				if err := next(msg); err != nil {
					return err
				}
				log.ack(i, msg.UUID)
				return nil
			}
		}
		applied := e.applyEffect(i)
		e.consumer(i, outer, func(msg *message.Message) error {
			// The effect is written first, then the handler fails: the
			// inbox must roll both back.
			if err := applied(msg); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			runs[msg.UUID]++
			if failed[msg.UUID] < failuresPerEvent {
				failed[msg.UUID]++
				return fmt.Errorf("conformance: downstream refused %s", msg.UUID)
			}
			return nil
		})
	}
	ids := e.insertEvents(n)
	eventually(t, "every instance acknowledged every event", hangGuard, func() bool { return log.allAcked(ids) })
	mu.Lock()
	for _, id := range ids {
		if failed[id] != failuresPerEvent || runs[id] < failuresPerEvent+1 {
			t.Errorf("event %s: handler failed %d times and ran %d times, want %d failures and a success", id, failed[id], runs[id], failuresPerEvent)
		}
	}
	mu.Unlock()
	_, _, total := log.minMaxDeliveries(ids)
	t.Logf("%d events, %d handler failures each, %d instances: %d deliveries", n, failuresPerEvent, instances, total)
	e.checkOnce(ids)
}
