package redisstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/brokers/redisstream"
	"github.com/outboxkit/outboxkit/framework/outbox"
)

// hangGuard bounds a wait in tests: a hang fails the test instead of the
// run (not a performance assertion).
const hangGuard = time.Minute

func TestPublishAsync(t *testing.T) {
	t.Parallel()

	t.Run("ManyInFlightKeepCallOrder", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		pub, err := redisstream.NewPublisher(b.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		// Reference entry written by Publish: PublishAsync must write the
		// same fields.
		if err := pub.Publish(b.topic, eventMessage(0, "k0")); err != nil {
			t.Fatal(err)
		}
		const n = 3000
		waits := make([]func(context.Context) error, n)
		for i := range n {
			if waits[i], err = pub.PublishAsync(b.topic, eventMessage(i+1, fmt.Sprintf("k%d", i%7))); err != nil {
				t.Fatalf("PublishAsync %d: %v", i, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		for i, wait := range waits {
			if err := wait(ctx); err != nil {
				t.Fatalf("wait %d: %v", i, err)
			}
		}
		entries, err := b.rdb.XRange(context.Background(), b.topic, "-", "+").Result()
		if err != nil || len(entries) != n+1 {
			t.Fatalf("XRANGE: %d entries, %v; want %d", len(entries), err, n+1)
		}
		ref := entries[0].Values
		for i, e := range entries[1:] {
			want := eventMessage(i+1, "")
			if e.Values[outbox.MetadataEventID] != want.UUID {
				t.Fatalf("entry %d is event %v, want %s: call order broken", i+1, e.Values[outbox.MetadataEventID], want.UUID)
			}
			if len(e.Values) != len(ref) || e.Values["payload"] != string(want.Payload) {
				t.Fatalf("entry %d fields %v, Publish wrote %v", i+1, e.Values, ref)
			}
		}
	})

	t.Run("FailureOnItsOwnWait", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		pub, err := redisstream.NewPublisher(b.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		notAStream := b.topic + "-string"
		if err := b.rdb.Set(context.Background(), notAStream, "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.rdb.Del(context.Background(), notAStream) })
		topics := []string{b.topic, b.topic, notAStream, b.topic}
		waits := make([]func(context.Context) error, len(topics))
		for i, topic := range topics {
			if waits[i], err = pub.PublishAsync(topic, eventMessage(i, "k")); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		for i, wait := range waits {
			err := wait(ctx)
			if (topics[i] == notAStream) != (err != nil) {
				t.Fatalf("wait %d (to %s): %v", i, topics[i], err)
			}
		}
		if l, _ := b.rdb.XLen(context.Background(), b.topic).Result(); l != 3 {
			t.Fatalf("XLEN %d, want the 3 other entries", l)
		}
	})

	t.Run("CloseWhileInFlight", func(t *testing.T) {
		t.Parallel()
		for name, addr := range map[string]string{"Reachable": "", "Unreachable": "127.0.0.1:1"} {
			t.Run(name, func(t *testing.T) {
				b := setup(t)
				b.cfg.Addr = addr
				pub, err := redisstream.NewPublisher(b.cfg)
				if err != nil {
					t.Fatal(err)
				}
				n := 2000
				if addr != "" {
					n = 100 // each pipeline fails after go-redis's dial retries
				}
				waits := make([]func(context.Context) error, 0, n)
				for i := range n {
					wait, err := pub.PublishAsync(b.topic, eventMessage(i, "k"))
					if err != nil {
						t.Fatal(err)
					}
					waits = append(waits, wait)
				}
				closed := make(chan error, 1)
				go func() { closed <- pub.Close() }()
				ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
				defer cancel()
				var failed int
				for _, wait := range waits {
					switch err := wait(ctx); {
					case errors.Is(err, context.DeadlineExceeded):
						t.Fatal("a wait hung after Close")
					case err != nil:
						failed++
					}
				}
				select {
				case <-closed:
				case <-ctx.Done():
					t.Fatal("Close hung")
				}
				if addr == "" && failed > 0 {
					t.Fatalf("%d of the publishes queued before Close failed; Close must send them", failed)
				}
				if addr != "" && failed != n {
					t.Fatalf("%d of %d publishes to an unreachable server failed", failed, n)
				}
				if _, err := pub.PublishAsync(b.topic, eventMessage(0, "k")); !errors.Is(err, redisstream.ErrPublisherClosed) {
					t.Fatalf("PublishAsync after Close: %v", err)
				}
			})
		}
	})
}

// BenchmarkPublish compares Publish (one XADD round trip per message) with
// PublishAsync (pipelined XADDs, up to window in flight), for
// 300-byte messages:
//
//	go test -run '^$' -bench 'Publish' -benchtime 20000x ./brokers/redisstream
func BenchmarkPublish(b *testing.B) {
	payload := make([]byte, 300)
	msg := func(i int) *message.Message {
		m := message.NewMessage(fmt.Sprintf("00000000-0000-7000-8000-%012d", i), payload)
		m.Metadata.Set(outbox.MetadataKey, fmt.Sprintf("k%d", i%64))
		return m
	}
	b.Run("Sync", func(b *testing.B) {
		bb := setup(b)
		pub, err := redisstream.NewPublisher(bb.cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer pub.Close()
		b.ResetTimer()
		for i := range b.N {
			if err := pub.Publish(bb.topic, msg(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("Async", func(b *testing.B) {
		bb := setup(b)
		pub, err := redisstream.NewPublisher(bb.cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer pub.Close()
		const window = 1024
		var mu sync.Mutex
		waits := make(chan func(context.Context) error, window)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for wait := range waits {
				if err := wait(context.Background()); err != nil {
					mu.Lock()
					b.Error(err)
					mu.Unlock()
				}
			}
		}()
		b.ResetTimer()
		for i := range b.N {
			wait, err := pub.PublishAsync(bb.topic, msg(i))
			if err != nil {
				b.Fatal(err)
			}
			waits <- wait
		}
		close(waits)
		<-done
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
