package mysql

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// recorder is a broker that records every publish in order.
type recorder struct {
	mu        sync.Mutex
	published []*message.Message
}

func newRecorder(testing.TB) *recorder { return &recorder{} }

func (r *recorder) Publish(_ string, msgs ...*message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, msgs...)
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
