package postgres_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxkit/outboxkit/drivers/postgres"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// setupNotify is setup with Config.NotifyDSN.
func setupNotify(t *testing.T) *bundle {
	t.Helper()
	b := setup(t)
	drv, err := postgres.New(b.db, postgres.Config{Table: b.drv.Table()[1 : len(b.drv.Table())-1], NotifyDSN: outboxtest.PostgresURL()})
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := outbox.New(drv, outbox.Config{})
	return &bundle{db: b.db, drv: drv, ob: ob}
}

func TestNotifications(t *testing.T) {
	t.Parallel()

	t.Run("a commit notifies, a rollback does not", func(t *testing.T) {
		t.Parallel()
		b := setupNotify(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch, err := b.drv.EventNotifications(ctx)
		if err != nil || ch == nil {
			t.Fatalf("EventNotifications: %v %v", ch, err)
		}
		tx, _ := b.db.Begin()
		if err := b.ob.Insert(ctx, tx, ev("k", 0)); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback()
		select {
		case <-ch:
			t.Fatal("a rolled-back insert notified the relays")
		case <-time.After(300 * time.Millisecond):
		}
		b.insert(t, ev("k", 1))
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatal("no notification after a committed insert")
		}
		cancel()
		for range ch { // closed once ctx ends
		}
	})

	t.Run("without NotifyDSN there is no channel", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if ch, err := b.drv.EventNotifications(context.Background()); ch != nil || err != nil {
			t.Fatalf("got %v %v", ch, err)
		}
	})

	t.Run("the relay wakes on commit instead of polling", func(t *testing.T) {
		t.Parallel()
		b := setupNotify(t)
		counted := &countingDriver{Driver: b.drv}
		rec := newRecorder()
		// With a 10 minute poll, only a notification can deliver the event
		// inserted once the relay sleeps after its first, empty claim.
		r, err := outbox.NewRelay(counted, rec, outbox.RelayConfig{PollInterval: 10 * time.Minute, MinPollInterval: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		defer func() { cancel(); <-done }()
		eventually(t, "the first, empty claim", func() bool { return counted.finished.Load() >= 1 })
		e := ev("k", 0)
		b.insert(t, e)
		eventually(t, "delivery woken by the commit", func() bool { _, d := rec.count(); return d == 1 })
		if got := rec.snapshot()[0].UUID; got != e.ID {
			t.Fatalf("delivered %s, want %s", got, e.ID)
		}
	})
}

// countingDriver counts finished held claims; embedding keeps the driver's
// optional interfaces (HeldClaimer, Notifier).
type countingDriver struct {
	*postgres.Driver
	finished atomic.Int64
}

func (c *countingDriver) EventClaimHeld(ctx context.Context, p *outboxdriver.EventClaimBatchParams) (outboxdriver.HeldBatch, error) {
	defer c.finished.Add(1)
	return c.Driver.EventClaimHeld(ctx, p)
}

// TestInProcessNudge: a relay whose idle polls have backed off to a minute
// still delivers an event at once when an Outbox of the same process inserts
// it: the insert nudges it back to MinPollInterval. Without the nudge the
// event would wait for the next poll, a minute later.
func TestInProcessNudge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := newRecorder()
	stop := runRelay(t, b, rec, outbox.RelayConfig{PollInterval: time.Minute, MinPollInterval: 10 * time.Millisecond, Publish: outbox.PublishDirect})
	defer stop()
	// Idle polls double from 10 ms: after 3 s the next one is seconds away.
	time.Sleep(3 * time.Second)
	e := ev("k", 0)
	b.insert(t, e)
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, distinct := rec.count(); distinct == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the inserted event was not published: the relay was not nudged out of its idle polls")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
