package mysql

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// recorder is the broker of the relay tests: a Watermill gochannel pub/sub
// behind a wrapper that records every successful publish in order, and can
// fail or delay publishes.
type recorder struct {
	pub  *gochannel.GoChannel
	fail func(msg *message.Message) error // nil: never fail

	mu        sync.Mutex
	published []*message.Message
	attempts  map[string]int
}

func newRecorder(t testing.TB) *recorder {
	pub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1 << 16}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pub.Close() })
	return &recorder{pub: pub, attempts: map[string]int{}}
}

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		r.mu.Lock()
		r.attempts[m.UUID]++
		r.mu.Unlock()
		if r.fail != nil {
			if err := r.fail(m); err != nil {
				return err
			}
		}
		if err := r.pub.Publish(topic, m); err != nil {
			return err
		}
		r.mu.Lock()
		r.published = append(r.published, m)
		r.mu.Unlock()
	}
	return nil
}

func (r *recorder) Close() error { return nil }

func (r *recorder) snapshot() []*message.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.published)
}

// hangingPublisher never answers until released: a broker that hangs.
type hangingPublisher struct {
	release chan struct{}
	entered chan string
}

func (h *hangingPublisher) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		select {
		case h.entered <- m.UUID:
		default:
		}
	}
	<-h.release
	return errors.New("broker hung")
}

func (h *hangingPublisher) Close() error { return nil }

// startRelay runs a relay until the test ends.
func startRelay(t *testing.T, drv outboxdriver.Driver, pub message.Publisher, cfg outbox.RelayConfig) {
	t.Helper()
	cfg.PollInterval = cmpOr(cfg.PollInterval, 10*time.Millisecond)
	cfg.ShutdownTimeout = cmpOr(cfg.ShutdownTimeout, 2*time.Second)
	relay, err := outbox.NewRelay(drv, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	})
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newOutbox(t testing.TB, drv outboxdriver.Driver) *outbox.Outbox {
	ob, err := outbox.New(drv, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

func (b *bundle) writeTx(t testing.TB, ob *outbox.Outbox, commit bool, events ...*outbox.Event) {
	t.Helper()
	tx, err := b.db.BeginTx(b.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Insert(b.ctx, tx, events...); err != nil {
		_ = tx.Rollback()
		t.Fatal(err)
	}
	if commit {
		err = tx.Commit()
	} else {
		err = tx.Rollback()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) stats(t testing.TB, ob *outbox.Outbox) *outbox.Stats {
	t.Helper()
	s, err := ob.Stats(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRelayCommitPublishesRollbackDoesNot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ob := newOutbox(t, b.drv)
	rec := newRecorder(t)
	msgs, err := rec.pub.Subscribe(b.ctx, "invoices")
	if err != nil {
		t.Fatal(err)
	}
	committed, _ := outbox.NewJSONEvent("invoice.issued", "invoices", "inv-1", map[string]int{"amount": 42})
	rolledBack, _ := outbox.NewJSONEvent("invoice.issued", "invoices", "inv-2", map[string]int{"amount": 7})
	b.writeTx(t, ob, true, committed)
	b.writeTx(t, ob, false, rolledBack)
	startRelay(t, b.drv, rec, outbox.RelayConfig{})

	select {
	case m := <-msgs:
		m.Ack()
		if m.UUID != committed.ID || string(m.Payload) != `{"amount":42}` ||
			m.Metadata.Get(outbox.MetadataKey) != "inv-1" || m.Metadata.Get("content-type") != "application/json" {
			t.Fatalf("published %s %s %v", m.UUID, m.Payload, m.Metadata)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("committed event not published")
	}
	eventually(t, 10*time.Second, "delivered status", func() bool {
		e, err := ob.Get(b.ctx, committed.ID)
		return err == nil && e.Status == outbox.StatusDelivered && e.DeliveredAt != nil
	})
	// Give the relay several more polls: nothing else may come.
	time.Sleep(300 * time.Millisecond)
	select {
	case m := <-msgs:
		t.Fatalf("rolled-back or duplicate event published: %s", m.UUID)
	default:
	}
	if _, err := ob.Get(b.ctx, rolledBack.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("rolled-back event stored: %v", err)
	}
	if s := b.stats(t, ob); s.Pending != 0 || s.DeliveredLastMinute != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRelayConcurrentWritersOutOfOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ob := newOutbox(t, b.drv)
	rec := newRecorder(t)
	startRelay(t, b.drv, rec, outbox.RelayConfig{BatchSize: 16})

	const writers, perWriter = 20, 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[string]bool{}
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				tx, err := b.db.BeginTx(b.ctx, nil)
				if err != nil {
					t.Error(err)
					return
				}
				e := &outbox.Event{Type: "w", Topic: "t", Key: fmt.Sprint("w", w, "-", i%3), Payload: []byte("x")}
				if err := ob.Insert(b.ctx, tx, e); err != nil {
					t.Error(err)
					return
				}
				// The row has its seq now; committing after a random delay
				// makes commit order differ from seq order.
				time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond)
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[e.ID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	eventually(t, 30*time.Second, "every committed event delivered", func() bool {
		s := b.stats(t, ob)
		return s.Pending == 0
	})
	got := map[string]bool{}
	for _, m := range rec.snapshot() {
		got[m.UUID] = true
	}
	for id := range want {
		if !got[id] {
			t.Errorf("committed event %s never published", id)
		}
	}
	if len(got) != writers*perWriter || len(want) != writers*perWriter {
		t.Fatalf("published %d distinct, committed %d, want %d", len(got), len(want), writers*perWriter)
	}
}

func TestRelayPoisonEventGoesDead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ob := newOutbox(t, b.drv)
	rec := newRecorder(t)
	rec.fail = func(m *message.Message) error {
		if m.Metadata.Get(outbox.MetadataKey) == "poison" {
			return errors.New("broker rejects poison")
		}
		return nil
	}
	poison := &outbox.Event{Type: "p", Topic: "t", Key: "poison", Payload: []byte("bad")}
	var others []*outbox.Event
	for i := range 20 {
		others = append(others, &outbox.Event{Type: "ok", Topic: "t", Key: fmt.Sprint("k", i%4), Payload: []byte("good")})
	}
	b.writeTx(t, ob, true, append([]*outbox.Event{poison}, others...)...)
	startRelay(t, b.drv, rec, outbox.RelayConfig{MaxAttempts: 3, BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond})

	eventually(t, 20*time.Second, "poison event dead", func() bool {
		e, err := ob.Get(b.ctx, poison.ID)
		return err == nil && e.Status == outbox.StatusDead
	})
	e, _ := ob.Get(b.ctx, poison.ID)
	if e.Attempts != 3 || e.LastError == "" || !strings.Contains(e.LastError, "broker rejects poison") {
		t.Fatalf("dead event: attempts %d last_error %q", e.Attempts, e.LastError)
	}
	eventually(t, 10*time.Second, "other keys delivered", func() bool {
		for _, o := range others {
			if s, err := ob.Get(b.ctx, o.ID); err != nil || s.Status != outbox.StatusDelivered {
				return false
			}
		}
		return true
	})
	if s := b.stats(t, ob); s.Dead != 1 || s.Pending != 0 {
		t.Fatalf("stats %+v", s)
	}
	// The operator fixes the broker and retries: the event flows.
	rec.fail = nil
	if n, err := ob.RetryDead(b.ctx, ""); err != nil || n != 1 {
		t.Fatalf("RetryDead = %d, %v", n, err)
	}
	eventually(t, 10*time.Second, "retried event delivered", func() bool {
		e, err := ob.Get(b.ctx, poison.ID)
		return err == nil && e.Status == outbox.StatusDelivered
	})
}

func TestRelayPerKeyOrderThreeRelays(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ob := newOutbox(t, b.drv)
	rec := newRecorder(t)
	// Transient failures and jitter make the relays interleave, retry and
	// hold keys back: order must survive all of it.
	var failures atomic.Int64
	rec.fail = func(m *message.Message) error {
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
		if rand.IntN(10) == 0 {
			failures.Add(1)
			return errors.New("transient")
		}
		return nil
	}
	var perRelay [3]atomic.Int64
	for i := range 3 {
		startRelay(t, b.drv, &countingPub{rec, &perRelay[i]}, outbox.RelayConfig{ID: fmt.Sprint("relay-", i), BatchSize: 7, MaxAttempts: 1000,
			BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	}
	const nKeys, total = 6, 240
	wantOrder := map[string][]string{}
	for i := 0; i < total; {
		n := 1 + rand.IntN(4)
		var events []*outbox.Event
		for j := 0; j < n && i < total; j++ {
			k := fmt.Sprint("key-", rand.IntN(nKeys))
			events = append(events, &outbox.Event{Type: "o", Topic: "t", Key: k, Payload: []byte(fmt.Sprint(i))})
			i++
		}
		b.writeTx(t, ob, true, events...)
		for _, e := range events {
			wantOrder[e.Key] = append(wantOrder[e.Key], e.ID)
		}
		if rand.IntN(4) == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	eventually(t, 60*time.Second, "all delivered", func() bool { return b.stats(t, ob).Pending == 0 })
	gotOrder := map[string][]string{}
	for _, m := range rec.snapshot() {
		k := m.Metadata.Get(outbox.MetadataKey)
		gotOrder[k] = append(gotOrder[k], m.UUID)
	}
	for k, want := range wantOrder {
		if !slices.Equal(gotOrder[k], want) {
			t.Errorf("key %s: published order differs from commit order\n got %v\nwant %v", k, gotOrder[k], want)
		}
	}
	rows, _ := b.drv.EventList(b.ctx, &outboxdriver.EventListParams{Limit: total})
	if len(rows) != total {
		t.Fatalf("%d rows", len(rows))
	}
	t.Logf("%d events, %d transient failures, publishes per relay %d/%d/%d, per-key order held",
		total, failures.Load(), perRelay[0].Load(), perRelay[1].Load(), perRelay[2].Load())
}

// countingPub counts the publishes one relay makes.
type countingPub struct {
	*recorder
	n *atomic.Int64
}

func (c *countingPub) Publish(topic string, msgs ...*message.Message) error {
	err := c.recorder.Publish(topic, msgs...)
	if err == nil {
		c.n.Add(int64(len(msgs)))
	}
	return err
}
