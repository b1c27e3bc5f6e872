package postgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// countingPublisher acknowledges instantly: it measures the relay itself.
type countingPublisher struct{ n atomic.Int64 }

func (p *countingPublisher) Publish(_ string, msgs ...*message.Message) error {
	p.n.Add(int64(len(msgs)))
	return nil
}

func (p *countingPublisher) Close() error { return nil }

// seedBacklog inserts b.N events (300-byte payloads, 1000 keys).
func seedBacklog(b *testing.B, bu *bundle) { insertBacklog(b, bu, b.N, 1000, make([]byte, 300)) }

// BenchmarkRelayDrain measures draining a backlog of b.N events (300-byte
// payloads, 1000 keys) with one relay and a null broker; compare it with
// BenchmarkInsert in the same run.
func BenchmarkRelayDrain(b *testing.B) {
	for _, c := range []struct {
		publish            outbox.PublishPath
		batch, concurrency int
	}{
		{outbox.PublishForwarder, 100, 1}, {outbox.PublishForwarder, 500, 1}, {outbox.PublishForwarder, 500, 2},
		{outbox.PublishDirect, 100, 1}, {outbox.PublishDirect, 500, 1}, {outbox.PublishDirect, 500, 2},
	} {
		batch := c.batch
		b.Run(fmt.Sprintf("publish=%s/batch=%d/concurrency=%d", c.publish, c.batch, c.concurrency), func(b *testing.B) {
			bu := setup(b)
			seedBacklog(b, bu)
			pub := &countingPublisher{}
			b.ResetTimer()
			start := time.Now()
			stop := runRelay(b, bu, pub, outbox.RelayConfig{BatchSize: batch, Concurrency: c.concurrency, Publish: c.publish})
			for pub.n.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			for bu.stats(b).Pending > 0 {
				time.Sleep(5 * time.Millisecond)
			}
			b.StopTimer()
			stop()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkInsert measures one event inserted in its own transaction, next
// to "raw": the same row with a hand-written INSERT (writer-cost target).
func BenchmarkInsert(b *testing.B) {
	bu := setup(b)
	payload := make([]byte, 300)
	ctx := context.Background()
	b.Run("outbox", func(b *testing.B) {
		for i := range b.N {
			tx, _ := bu.db.Begin()
			if err := bu.ob.Insert(ctx, tx, &outbox.Event{Type: "bench", Topic: "bench", Key: fmt.Sprint(i % 1000), Payload: payload}); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		q := `INSERT INTO ` + bu.drv.Table() + ` (id, type, topic, key, payload, headers, created_at) VALUES (gen_random_uuid(), $1, $2, $3, $4, $5::jsonb, now())`
		for i := range b.N {
			tx, _ := bu.db.Begin()
			if _, err := tx.Exec(q, "bench", "bench", fmt.Sprint(i%1000), payload, "{}"); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// asyncCountingPublisher is countingPublisher with PublishAsync, so that the
// relay takes its pipelined path as with a real broker module.
type asyncCountingPublisher struct{ countingPublisher }

func (p *asyncCountingPublisher) PublishAsync(_ string, _ *message.Message) (func(context.Context) error, error) {
	p.n.Add(1)
	return func(context.Context) error { return nil }, nil
}

// BenchmarkCDCDrain measures a CDC relay (stream mode) delivering b.N events
// (300-byte payloads, 1000 keys) committed after its slot was created, with
// a null broker: the relay's and the stream's own cost per event.
func BenchmarkCDCDrain(b *testing.B) {
	bu := setupCDC(b)
	if _, err := bu.cdc.SlotCreate(b.Context()); err != nil {
		b.Fatal(err)
	}
	// Nothing was committed before the slot: the backlog comes through
	// the log, not from the table.
	markBacklogDone(b, bu)
	seedBacklog(b, bu.bundle)
	pub := &asyncCountingPublisher{}
	r, err := outbox.NewRelay(bu.cdc, pub, outbox.RelayConfig{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- r.Run(ctx) }()
	for pub.n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	for bu.stats(b).Pending > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
