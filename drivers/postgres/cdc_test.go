package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/drivers/postgres/pgtest"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// TestMain stops the wal_level=logical cluster the CDC tests start.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// cdcBundle is a migrated outbox table on the test cluster with
// wal_level=logical, with a CDC driver on it.
type cdcBundle struct {
	*bundle
	url string
	cdc *postgres.CDC
}

func setupCDC(t testing.TB) *cdcBundle {
	t.Helper()
	url := pgtest.URL(t)
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	table := outboxtest.UniqueName("cdc")
	drv, err := postgres.NewCDC(db, postgres.Config{Table: table}, postgres.CDCConfig{ConnString: url, StatusInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.MigrateUp(t.Context(), &outboxdriver.MigrateUpParams{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 { // the server lets the slot go once the relays' connections are gone
			if err := drv.SlotDrop(context.Background()); err == nil || errors.Is(err, postgres.ErrSlotNotFound) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = db.Exec(`DROP PUBLICATION IF EXISTS "` + drv.Publication() + `"`)
		_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_migrations", "` + table + `_cdc_state", "` + table + `_acks"`)
	})
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &cdcBundle{bundle: &bundle{db: db, table: table, drv: drv.Driver, ob: ob}, url: url, cdc: drv}
}

// relay runs a stream-mode relay on the bundle's driver until stop.
func (b *cdcBundle) relay(t *testing.T, id string, pub *recorder) (stop func()) {
	t.Helper()
	return startRelay(t, b.cdc, pub, outbox.RelayConfig{Logger: testLogger(t), ID: id, MaxAttempts: 3, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
}

func (r *recorder) byIDCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

func TestCDCConfigValidation(t *testing.T) {
	t.Parallel()
	db, _ := sql.Open("postgres", "postgres://127.0.0.1:1/x")
	defer db.Close()
	for field, cfg := range map[string]postgres.CDCConfig{
		"ConnString":     {},
		"Slot":           {ConnString: "postgres://127.0.0.1/x", Slot: "Bad-Slot"},
		"StatusInterval": {ConnString: "postgres://127.0.0.1/x", StatusInterval: time.Hour},
	} {
		_, err := postgres.NewCDC(db, postgres.Config{}, cfg)
		if !errors.Is(err, outboxdriver.ErrInvalidConfig) || !strings.Contains(err.Error(), "CDCConfig."+field) {
			t.Errorf("%s: got %v, want ErrInvalidConfig naming CDCConfig.%s", field, err, field)
		}
	}
	if got := postgres.SlotName("", "Outbox"); got != "outbox_slot" {
		t.Errorf("SlotName = %q, want outbox_slot", got)
	}
	if got := postgres.SlotName("s", strings.Repeat("t", 60)); len(got) > 63 {
		t.Errorf("SlotName of a long name is %d bytes", len(got))
	}
}

// TestCDCNeedsLogicalWAL opens a stream on the machine's own server, which
// runs with wal_level=replica: the error says how to enable logical.
func TestCDCNeedsLogicalWAL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var level string
	if err := b.db.QueryRow("SHOW wal_level").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level == "logical" {
		t.Skip("skipped: the server at OUTBOX_TEST_POSTGRES_URL already runs wal_level=logical")
	}
	drv, err := postgres.NewCDC(b.db, postgres.Config{Table: b.table}, postgres.CDCConfig{ConnString: outboxtest.PostgresURL()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = drv.EventStreamOpen(t.Context(), &outboxdriver.EventStreamOpenParams{})
	if !errors.Is(err, postgres.ErrWALLevel) || !errors.Is(err, outboxdriver.ErrStreamUnsupported) ||
		!strings.Contains(err.Error(), "ALTER SYSTEM SET wal_level = logical") || !strings.Contains(err.Error(), "rds.logical_replication") {
		t.Fatalf("got %v, want ErrWALLevel saying how to enable it", err)
	}
	// The relay returns it instead of retrying for ever.
	r, err := outbox.NewRelay(drv, newRecorder(), outbox.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.Run(ctx); !errors.Is(err, postgres.ErrWALLevel) {
		t.Fatalf("Run: got %v, want ErrWALLevel", err)
	}
}

func TestCDCSlotLifecycle(t *testing.T) {
	t.Parallel()
	b := setupCDC(t)
	ctx := t.Context()
	if _, err := b.cdc.SlotStatus(ctx); !errors.Is(err, postgres.ErrSlotNotFound) {
		t.Fatalf("status before create: %v, want ErrSlotNotFound", err)
	}
	created, err := b.cdc.SlotCreate(ctx)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if created, err := b.cdc.SlotCreate(ctx); err != nil || created {
		t.Fatalf("create again: %v %v, want false, nil", created, err)
	}
	st, err := b.cdc.SlotStatus(ctx)
	if err != nil || st.Slot != b.cdc.Slot() || st.Active || st.ConfirmedLSN == "" {
		t.Fatalf("status: %+v %v", st, err)
	}
	if err := b.cdc.SlotDrop(ctx); err != nil {
		t.Fatal(err)
	}
	err = b.cdc.SlotDrop(ctx)
	if !errors.Is(err, postgres.ErrSlotNotFound) || !strings.Contains(err.Error(), b.cdc.Slot()) {
		t.Fatalf("drop of a missing slot: %v, want ErrSlotNotFound naming %s", err, b.cdc.Slot())
	}
}

// TestCDCFailover runs two relays on one slot: one streams, the other waits
// as a hot standby and takes over when the first stops; nothing is lost,
// each key stays in order, and the standby streams only after the first
// relay stopped.
func TestCDCFailover(t *testing.T) {
	t.Parallel()
	b := setupCDC(t)
	pubA, pubB := newRecorder(), newRecorder()
	stopA := b.relay(t, "a", pubA)
	eventually(t, "relay a streaming", func() bool {
		st, err := b.cdc.SlotStatus(t.Context())
		return err == nil && st.Active
	})
	b.relay(t, "b", pubB)
	var want []string
	for i := range 50 {
		e := ev([]string{"x", "y"}[i%2], i)
		b.insert(t, e)
		want = append(want, e.ID)
	}
	eventually(t, "relay a publishing every event", func() bool { _, d := pubA.count(); return d == 50 })
	if total, _ := pubB.count(); total != 0 {
		t.Fatalf("the standby published %d events while relay a streamed", total)
	}
	stopA()
	for i := 50; i < 100; i++ {
		e := ev([]string{"x", "y"}[i%2], i)
		b.insert(t, e)
		want = append(want, e.ID)
	}
	eventually(t, "relay b taking over", func() bool { _, d := pubB.count(); return d >= 50 })
	seen := map[string]bool{}
	for _, m := range append(pubA.snapshot(), pubB.snapshot()...) {
		seen[m.UUID] = true
	}
	for _, id := range want {
		if !seen[id] {
			t.Fatalf("event %s lost across the failover", id)
		}
	}
	last := map[string]int{}
	for i, m := range pubB.snapshot() {
		k := m.Metadata.Get(outbox.MetadataKey)
		if p, ok := last[k]; ok && m.UUID < pubB.snapshot()[p].UUID {
			t.Fatalf("key %s out of order after the failover", k)
		}
		last[k] = i
	}
	eventually(t, "no pending event", func() bool {
		s, err := b.ob.Stats(t.Context())
		if err == nil && s.Pending > 0 {
			page, _ := b.ob.List(t.Context(), outbox.ListFilter{Status: outbox.StatusPending})
			for _, e := range page.Events {
				t.Logf("pending: %s key %s attempts %d locked_by %q published by a %d b %d", e.ID, e.Key, e.Attempts, e.LockedBy, pubA.byIDCount(e.ID), pubB.byIDCount(e.ID))
			}
		}
		return err == nil && s.Pending == 0
	})
	st, err := b.cdc.SlotStatus(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("slot after failover: %+v", st)
}

// TestCDCRetryAndDead: an event the broker refuses is retried, dies after
// MaxAttempts with its error on the row, and Retry sends it again through
// the stream.
func TestCDCRetryAndDead(t *testing.T) {
	t.Parallel()
	b := setupCDC(t)
	pub := newRecorder()
	poison := ev("p", 0)
	poison.ID = uuid.NewString()
	var refuse sync.Map
	refuse.Store(poison.ID, true)
	pub.failFn = func(m *message.Message) error {
		if _, ok := refuse.Load(m.UUID); ok {
			return errors.New("broker says no")
		}
		return nil
	}
	b.relay(t, "r", pub)
	later := ev("p", 1)
	other := ev("q", 2)
	b.insert(t, poison, later, other)
	eventually(t, "the poison event dead", func() bool {
		s, err := b.ob.Get(t.Context(), poison.ID)
		return err == nil && s.Status == outbox.StatusDead
	})
	s, _ := b.ob.Get(t.Context(), poison.ID)
	if s.Attempts != 3 || !strings.Contains(s.LastError, "broker says no") {
		t.Fatalf("dead row: attempts %d, last error %q", s.Attempts, s.LastError)
	}
	eventually(t, "the others delivered", func() bool {
		a, err1 := b.ob.Get(t.Context(), later.ID)
		c, err2 := b.ob.Get(t.Context(), other.ID)
		return err1 == nil && err2 == nil && a.Status == outbox.StatusDelivered && c.Status == outbox.StatusDelivered
	})
	refuse.Delete(poison.ID)
	if n, err := b.ob.RetryDead(t.Context(), ""); err != nil || n != 1 {
		t.Fatalf("RetryDead: %d, %v", n, err)
	}
	eventually(t, "the retried event delivered", func() bool {
		s, err := b.ob.Get(t.Context(), poison.ID)
		return err == nil && s.Status == outbox.StatusDelivered && s.LockedBy == ""
	})
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestCDCDatabaseRestart restarts the test cluster (pg_ctl restart) while a
// CDC relay streams: it reconnects, resumes from its slot, and every event
// is published, each key in order. Not parallel: the restart cuts every
// connection of the package's tests.
func TestCDCDatabaseRestart(t *testing.T) {
	b := setupCDC(t)
	pub := newRecorder()
	b.relay(t, "r", pub)
	var want []string
	insert := func(from, to int) {
		for i := from; i < to; i++ {
			e := ev([]string{"x", "y", "z"}[i%3], i)
			for {
				tx, err := b.db.Begin()
				if err == nil {
					if err = b.ob.Insert(context.Background(), tx, e); err == nil {
						err = tx.Commit()
					} else {
						_ = tx.Rollback()
					}
				}
				if err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond) // the server is restarting
			}
			want = append(want, e.ID)
		}
	}
	insert(0, 60)
	eventually(t, "the first events published", func() bool { _, d := pub.count(); return d >= 30 })
	if err := pgtest.Restart(); err != nil {
		t.Fatalf("cannot restart the test cluster: %v", err)
	}
	insert(60, 120)
	b.waitSettled(t, pub, want)
	// Per key, the first publishes follow commit order.
	first := map[string]bool{}
	last := map[string]int{}
	index := map[string]int{}
	for i, id := range want {
		index[id] = i
	}
	for _, m := range pub.snapshot() {
		if first[m.UUID] {
			continue
		}
		first[m.UUID] = true
		k := m.Metadata.Get(outbox.MetadataKey)
		if p, ok := last[k]; ok && index[m.UUID] < p {
			t.Fatalf("key %s out of order across the restart", k)
		}
		last[k] = index[m.UUID]
	}
	total, distinct := pub.count()
	t.Logf("database restart: %d events, %d publishes", distinct, total)
}

// waitSettled waits until every event of ids was published and none is
// pending.
func (b *cdcBundle) waitSettled(t *testing.T, pub *recorder, ids []string) {
	t.Helper()
	eventually(t, "every event published", func() bool {
		for _, id := range ids {
			if pub.byIDCount(id) == 0 {
				return false
			}
		}
		return true
	})
	eventually(t, "no pending event", func() bool {
		s, err := b.ob.Stats(t.Context())
		return err == nil && s.Pending == 0
	})
}

func ids(events []*outbox.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// TestCDCFastShutdown stops PostgreSQL (pg_ctl restart -m fast, which
// gives up after 60 s) while a CDC relay holds events it cannot settle: its
// publishes hang, and the shutting-down server refuses its outcome writes.
// The server must not wait for the relay; after the restart every event is
// published. Not parallel: the restart cuts every connection of the
// package's tests.
func TestCDCFastShutdown(t *testing.T) {
	b := setupCDC(t)
	pub := newRecorder()
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free)
	events := []*outbox.Event{ev("a", 0), ev("b", 1), ev("c", 2)}
	var hang, calls sync.Map
	for _, e := range events {
		e.ID = uuid.NewString()
		hang.Store(e.ID, true)
	}
	pub.failFn = func(m *message.Message) error {
		if _, ok := hang.Load(m.UUID); ok {
			calls.Store(m.UUID, true)
			<-release
		}
		return nil
	}
	b.relay(t, "r", pub)
	// A first event, published, shows the relay streaming: the next ones
	// come from the log, not from the table's first read.
	first := ev("a", 100)
	b.insert(t, first)
	eventually(t, "the first event published", func() bool { return pub.byIDCount(first.ID) > 0 })
	b.insert(t, events...)
	eventually(t, "a publish in flight", func() bool {
		n := 0
		calls.Range(func(any, any) bool { n++; return true })
		return n > 0
	})
	if err := pgtest.Restart(); err != nil {
		t.Fatalf("PostgreSQL did not stop while the relay held unsettled events: %v", err)
	}
	free()
	b.waitSettled(t, pub, ids(events))
}

// TestCDCFastShutdownQueueFull stops PostgreSQL while a CDC relay drains a
// backlog from the log through a slow broker: the stream's queue is full
// (its reader waits for room and reads nothing) and the relay's outcome
// writes are refused. The server must not wait for the relay; after the
// restart every event is published. Not parallel (see TestCDCFastShutdown).
func TestCDCFastShutdownQueueFull(t *testing.T) {
	b := setupCDC(t)
	pub := newRecorder()
	pub.failFn = func(*message.Message) error {
		time.Sleep(10 * time.Millisecond)
		return nil
	}
	startRelay(t, b.cdc, pub, outbox.RelayConfig{Logger: testLogger(t), ID: "r", BatchSize: 2})
	first := ev("a", 0)
	b.insert(t, first)
	eventually(t, "the first event published", func() bool { return pub.byIDCount(first.ID) > 0 })
	var events []*outbox.Event
	for i := range 40 {
		tx := make([]*outbox.Event, 10)
		for j := range tx {
			tx[j] = ev(fmt.Sprint("k", j), i*10+j)
		}
		b.insert(t, tx...)
		events = append(events, tx...)
	}
	eventually(t, "the backlog draining", func() bool { _, d := pub.count(); return d > 20 })
	if err := pgtest.Restart(); err != nil {
		t.Fatalf("PostgreSQL did not stop while the relay drained a backlog: %v", err)
	}
	b.waitSettled(t, pub, ids(events))
}

// TestCDCBacklogBeforeSlot writes events before any relay created the
// slot: the first relay reads them from the table, then streams.
func TestCDCBacklogBeforeSlot(t *testing.T) {
	t.Parallel()
	b := setupCDC(t)
	var want []string
	for i := range 40 {
		e := ev([]string{"x", "y"}[i%2], i)
		b.insert(t, e)
		want = append(want, e.ID)
	}
	pub := newRecorder()
	b.relay(t, "r", pub)
	later := ev("x", 99)
	b.insert(t, later)
	want = append(want, later.ID)
	eventually(t, "the backlog and the later event delivered", func() bool {
		s, err := b.ob.Stats(t.Context())
		return err == nil && s.Pending == 0
	})
	for _, id := range want {
		if pub.byIDCount(id) == 0 {
			t.Fatalf("event %s not published", id)
		}
	}
	var xs []string
	for _, m := range pub.snapshot() {
		if m.Metadata.Get(outbox.MetadataKey) == "x" && !slices.Contains(xs, m.UUID) {
			xs = append(xs, m.UUID)
		}
	}
	var wantX []string
	for i, id := range want {
		if i%2 == 0 || id == later.ID {
			wantX = append(wantX, id)
		}
	}
	if !slices.Equal(xs, wantX) {
		t.Fatalf("key x published in order %v, want %v", xs, wantX)
	}
}

// nextRows reads batches from st until it returned want rows or ctx ends.
func nextRows(ctx context.Context, t *testing.T, st outboxdriver.EventStream, want int) ([]*outboxdriver.EventRow, uint64) {
	t.Helper()
	var rows []*outboxdriver.EventRow
	var end uint64
	for len(rows) < want {
		b, err := st.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d rows: %v", len(rows), want, err)
		}
		rows = append(rows, b.Rows...)
		end = max(end, b.End)
	}
	return rows, end
}

// TestCDCReplayedRetries: a stream that resumes before retries whose
// events were sent again and delivered since (a relay killed before it
// confirmed) drops them without waiting on each, and hands out the next
// event at once. A retried event with a TOASTed payload, which the update
// does not carry, is streamed with its whole payload.
func TestCDCReplayedRetries(t *testing.T) {
	t.Parallel()
	b := setupCDC(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	open := func() outboxdriver.EventStream {
		st, err := b.cdc.EventStreamOpen(ctx, &outboxdriver.EventStreamOpenParams{BatchSize: 100, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	const n = 20
	var ids []string
	for i := range n {
		e := ev("k", i)
		b.insert(t, e)
		ids = append(ids, e.ID)
	}
	_, end := nextRows(ctx, t, st, n)
	if err := st.Confirm(ctx, end); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// What a relay did after its last confirmation, then died: delivered
	// the events, resent them (a retry each), delivered them again.
	deliver := func() {
		if _, err := b.db.Exec(`UPDATE "` + b.table + `" SET status = 'delivered', delivered_at = now(), locked_by = NULL WHERE key = 'k'`); err != nil {
			t.Fatal(err)
		}
	}
	deliver()
	for _, id := range ids {
		if n, err := b.ob.Retry(ctx, id); err != nil || n != 1 {
			t.Fatalf("retry %s: %d, %v", id, n, err)
		}
	}
	deliver()

	st = open()
	defer st.Close()
	big := ev("big", 0)
	big.Payload = make([]byte, 64<<10)
	for i := range big.Payload {
		big.Payload[i] = byte(i*7919>>3) ^ byte(i) // not compressible enough to stay inline
	}
	b.insert(t, big)
	// The old stream waited up to 2s on each replayed retry (40s here):
	// a relay stalled for minutes after a crash in a busy outbox.
	start := time.Now()
	stallCtx, stallCancel := context.WithTimeout(ctx, 15*time.Second)
	defer stallCancel()
	rows, _ := nextRows(stallCtx, t, st, 1)
	if len(rows) != 1 || rows[0].ID != big.ID {
		var got []string
		for _, r := range rows {
			got = append(got, r.ID)
		}
		t.Fatalf("resumed stream handed out %v, want only the new event %s", got, big.ID)
	}
	t.Logf("the next event after %d replayed retries came in %s", n, time.Since(start))

	if n, err := b.ob.Retry(ctx, big.ID); err != nil || n != 1 {
		t.Fatalf("retry the large event: %d, %v", n, err)
	}
	rows, _ = nextRows(ctx, t, st, 1)
	if r := rows[0]; r.ID != big.ID || r.LockedBy != "retry" || !slices.Equal(r.Payload, big.Payload) || string(r.Headers) == "" {
		t.Fatalf("retried large event streamed as id %s locked_by %q, %d payload bytes (want %d), headers %q", r.ID, r.LockedBy, len(r.Payload), len(big.Payload), r.Headers)
	}
}

// TestCDCBacklogFromTable: a new slot's first stream reads the pending
// backlog from the table, a batch at a time in seq order, and drops what
// its log replays of those events: each is handed out once, then the next
// committed event.
func TestCDCBacklogFromTable(t *testing.T) {
	t.Parallel()
	b := setupCDC(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := b.cdc.SlotCreate(ctx); err != nil {
		t.Fatal(err)
	}
	const n, batch = 250, 100
	for i := 0; i < n; i += 50 {
		var evs []*outbox.Event
		for j := i; j < i+50; j++ {
			evs = append(evs, ev(fmt.Sprint("k", j%7), j))
		}
		b.insert(t, evs...)
	}
	st, err := b.cdc.EventStreamOpen(ctx, &outboxdriver.EventStreamOpenParams{BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var seqs []int64
	for len(seqs) < n {
		sb, err := st.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(sb.Rows) > batch || sb.End != 0 {
			t.Fatalf("a batch of the backlog has %d rows (at most %d) and end %d (0: read from the table)", len(sb.Rows), batch, sb.End)
		}
		for _, r := range sb.Rows {
			seqs = append(seqs, r.Seq)
		}
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("backlog handed out out of seq order or twice: %d after %d", seqs[i], seqs[i-1])
		}
	}
	if len(seqs) != n {
		t.Fatalf("backlog handed out as %d rows, want %d", len(seqs), n)
	}
	live := ev("k0", n)
	b.insert(t, live)
	rows, _ := nextRows(ctx, t, st, 1)
	if len(rows) != 1 || rows[0].ID != live.ID {
		t.Fatalf("after the backlog the stream handed out %d rows (first %s), want only the new event %s", len(rows), rows[0].ID, live.ID)
	}
}

// TestCDCQueueBounded: a backlog streamed from the log is held in memory a
// few batches at a time: the reader stops reading the log while it holds
// maxQueuedBatches (8) batches for Next, and goes on as Next takes them;
// every event still arrives once, in seq order.
func TestCDCQueueBounded(t *testing.T) {
	t.Parallel()
	b := setupCDC(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const txns, perTxn, batch = 40, 50, 10
	st := streamFromLog(ctx, t, b, batch, slices.Repeat([]int{perTxn}, txns)...)
	// The reader may go past the bound by the transaction that reached it.
	const bound = 8*batch + perTxn
	most := 0
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		most = max(most, postgres.QueuedRows(st))
	}
	if most > bound || most < 8*batch {
		t.Fatalf("the reader held up to %d rows for Next, want between %d and %d", most, 8*batch, bound)
	}
	rows, _ := nextRows(ctx, t, st, txns*perTxn)
	for i, r := range rows {
		if r.Seq != int64(i+1) {
			t.Fatalf("row %d handed out with seq %d, want %d", i, r.Seq, i+1)
		}
	}
	if len(rows) != txns*perTxn {
		t.Fatalf("handed out %d rows, want %d", len(rows), txns*perTxn)
	}
}

// markBacklogDone records that the slot's first stream read the backlog
// from the table, as a relay that ran before would have: the next stream
// takes every event from the log.
func markBacklogDone(t testing.TB, b *cdcBundle) {
	t.Helper()
	if _, err := b.db.Exec(`UPDATE "` + b.table + `_cdc_state" SET backlog_done = true`); err != nil {
		t.Fatal(err)
	}
}

// streamFromLog creates the slot, marks its backlog read, commits one
// transaction per txnSizes entry (events with seqs 1, 2, ... over 7 keys)
// and opens a stream of batch rows, which takes them all from the log.
func streamFromLog(ctx context.Context, t *testing.T, b *cdcBundle, batch int, txnSizes ...int) outboxdriver.EventStream {
	t.Helper()
	if _, err := b.cdc.SlotCreate(ctx); err != nil {
		t.Fatal(err)
	}
	markBacklogDone(t, b)
	n := 0
	for _, size := range txnSizes {
		var evs []*outbox.Event
		for range size {
			evs = append(evs, ev(fmt.Sprint("k", n%7), n))
			n++
		}
		b.insert(t, evs...)
	}
	st, err := b.cdc.EventStreamOpen(ctx, &outboxdriver.EventStreamOpenParams{BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestCDCLargeTransactionInBatches: a transaction with more events than a
// batch is handed out a batch at a time, in seq order, and only its last
// part carries the position to confirm, so that the relay's window (what a
// crash may publish again) stays BatchSize x Concurrency.
func TestCDCLargeTransactionInBatches(t *testing.T) {
	t.Parallel()
	b := setupCDC(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const n, batch = 250, 100
	st := streamFromLog(ctx, t, b, batch, n, 1)
	var sizes []int
	var ends []uint64
	var seqs []int64
	for len(seqs) < n+1 {
		sb, err := st.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sizes, ends = append(sizes, len(sb.Rows)), append(ends, sb.End)
		for _, r := range sb.Rows {
			seqs = append(seqs, r.Seq)
		}
	}
	if !slices.Equal(sizes, []int{100, 100, 50, 1}) || ends[0] != 0 || ends[1] != 0 || ends[2] == 0 || ends[3] <= ends[2] {
		t.Fatalf("batches of %v rows with ends %v, want 100, 100, 50 (the transaction, its end on the last part) and 1", sizes, ends)
	}
	for i, seq := range seqs {
		if seq != int64(i+1) {
			t.Fatalf("row %d handed out with seq %d, want %d", i, seq, i+1)
		}
	}
}

// TestCDCHostileRowsFromLog: rows written behind the driver's back with
// hostile values (raw INSERTs, so the log carries them as they are) never
// stall the stream: an unreadable one (headers not a JSON object of
// strings, an empty topic) is dead with "unreadable row: ..." after one
// attempt and does not hold back the next event of its key; the others
// (terminal escapes, HTML, a TOASTed 200 KiB header, binary payload) are
// published intact.
func TestCDCHostileRowsFromLog(t *testing.T) {
	t.Parallel()
	b := setupCDC(t)
	pub := newRecorder()
	b.relay(t, "r", pub)
	eventually(t, "the stream open", func() bool {
		st, err := b.cdc.SlotStatus(t.Context())
		return err == nil && st.Active
	})
	type row struct{ name, typ, topic, key, headers string }
	rows := []row{
		{"headers_not_strings", "t", "topic", "bad", `{"retries": 3, "ok": true}`},
		{"topic_empty", "t", "", "bad2", `{}`},
		{"key_terminal_escape", "t", "topic", "\x1b[2J\x1b]0;pwned\x07", `{}`},
		{"type_html", `<script>alert("x")</script>`, "topic", "h", `{}`},
		{"headers_huge", "t", "topic", "h2", `{"h":"` + strings.Repeat("v", 200<<10) + `"}`},
	}
	ids := map[string]string{}
	tx, err := b.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		id := uuid.NewString()
		ids[r.name] = id
		if _, err := tx.Exec(`INSERT INTO "`+b.table+`" (id, type, topic, key, payload, headers) VALUES ($1, $2, $3, $4, $5, $6::jsonb)`,
			id, r.typ, r.topic, r.key, []byte("\x00\xff\xfe binary \x1b[0m"), r.headers); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	follower := ev("bad", 1) // same key as the unreadable row
	b.insert(t, follower)
	eventually(t, "nothing pending", func() bool { return b.stats(t).Pending == 0 })
	for _, name := range []string{"headers_not_strings", "topic_empty"} {
		s, err := b.ob.Get(t.Context(), ids[name])
		if err != nil || s.Status != outbox.StatusDead || s.Attempts != 1 || !strings.HasPrefix(s.LastError, "unreadable row") {
			t.Fatalf("%s: %+v, %v; want dead after 1 attempt with an \"unreadable row\" error", name, s, err)
		}
		if pub.byIDCount(ids[name]) != 0 {
			t.Fatalf("%s: published", name)
		}
	}
	if s, err := b.ob.Get(t.Context(), follower.ID); err != nil || s.Status != outbox.StatusDelivered {
		t.Fatalf("the follower of the unreadable row: %+v, %v; want delivered", s, err)
	}
	for _, r := range rows[2:] {
		var got *message.Message
		for _, m := range pub.snapshot() {
			if m.UUID == ids[r.name] {
				got = m
			}
		}
		if got == nil {
			t.Fatalf("%s: not published", r.name)
		}
		if got.Metadata.Get(outbox.MetadataKey) != r.key || got.Metadata.Get(outbox.MetadataEventType) != r.typ ||
			string(got.Payload) != "\x00\xff\xfe binary \x1b[0m" {
			t.Fatalf("%s: published with key %q, type %q, payload %q", r.name, got.Metadata.Get(outbox.MetadataKey), got.Metadata.Get(outbox.MetadataEventType), got.Payload)
		}
		if r.name == "headers_huge" && len(got.Metadata.Get("h")) != 200<<10 {
			t.Fatalf("headers_huge: header h published with %d bytes, want %d", len(got.Metadata.Get("h")), 200<<10)
		}
	}
}
