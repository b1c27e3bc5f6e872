package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/brokers/kafka"
	"github.com/outboxkit/outboxkit/framework/outbox"
)

// hangGuard bounds a wait in tests: a hang fails the test instead of the
// run (not a performance assertion).
const hangGuard = time.Minute

func TestPublishAsync(t *testing.T) {
	t.Parallel()

	t.Run("ManyInFlightKeepKeyOrder", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		pub, err := kafka.NewPublisher(b.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		const n, keys = 3000, 8
		waits := make([]func(context.Context) error, n)
		for i := range n {
			if waits[i], err = pub.PublishAsync(b.topic, eventMessage(i, fmt.Sprintf("key-%d", i%keys))); err != nil {
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
		recs := readAll(t, b.cluster.ListenAddrs(), b.topic, n)
		last := map[string]int{}
		for _, r := range recs {
			var i int
			id, _ := header(r, outbox.MetadataEventID)
			if _, err := fmt.Sscanf(id, "00000000-0000-7000-8000-%012d", &i); err != nil {
				t.Fatalf("record id %q: %v", id, err)
			}
			want := eventMessage(i, fmt.Sprintf("key-%d", i%keys))
			if string(r.Key) != want.Metadata.Get(outbox.MetadataKey) || string(r.Value) != string(want.Payload) {
				t.Fatalf("record %d: key %q value %q", i, r.Key, r.Value)
			}
			if prev, ok := last[string(r.Key)]; ok && prev > i {
				t.Fatalf("key %s: record %d after %d", r.Key, i, prev)
			}
			last[string(r.Key)] = i
		}
	})

	t.Run("FailureOnItsOwnWait", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		pub, err := kafka.NewPublisher(b.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		msgs := []*message.Message{eventMessage(0, "k"), eventMessage(1, "k"), eventMessage(2, "k"), eventMessage(3, "k")}
		// Larger than Producer.MaxMessageBytes (1 MB): the producer refuses
		// this record alone.
		msgs[2].Payload = make([]byte, 2<<20)
		waits := make([]func(context.Context) error, len(msgs))
		for i, m := range msgs {
			if waits[i], err = pub.PublishAsync(b.topic, m); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		for i, wait := range waits {
			err := wait(ctx)
			if (i == 2) != (err != nil) {
				t.Fatalf("wait %d: %v", i, err)
			}
			var ce sarama.ConfigurationError
			if i == 2 && !errors.As(err, &ce) {
				t.Fatalf("wait 2: %v, want sarama's refusal of the record's size", err)
			}
		}
		readAll(t, b.cluster.ListenAddrs(), b.topic, 3)
	})

	t.Run("CloseWhileInFlight", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		pub, err := kafka.NewPublisher(b.cfg)
		if err != nil {
			t.Fatal(err)
		}
		const n = 2000
		waits := make([]func(context.Context) error, n)
		for i := range n {
			if waits[i], err = pub.PublishAsync(b.topic, eventMessage(i, fmt.Sprintf("key-%d", i%5))); err != nil {
				t.Fatal(err)
			}
		}
		closed := make(chan error, 1)
		go func() { closed <- pub.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		for i, wait := range waits {
			if err := wait(ctx); err != nil {
				t.Fatalf("wait %d after Close: %v (Close must deliver what was handed over)", i, err)
			}
		}
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("Close hung")
		}
		if _, err := pub.PublishAsync(b.topic, eventMessage(0, "k")); !errors.Is(err, kafka.ErrPublisherClosed) {
			t.Fatalf("PublishAsync after Close: %v", err)
		}
		readAll(t, b.cluster.ListenAddrs(), b.topic, n)
	})
}

// BenchmarkPublish compares Publish (each record acknowledged before the
// next is sent) with PublishAsync (up to window records in flight, batched
// by the async producer), 300-byte records over 64 keys, against the
// in-process kfake cluster (it shares the CPU with the client):
//
//	go test -run '^$' -bench 'Publish' -benchtime 20000x ./brokers/kafka
func BenchmarkPublish(b *testing.B) {
	payload := make([]byte, 300)
	msg := func(i int) *message.Message {
		m := message.NewMessage(fmt.Sprintf("00000000-0000-7000-8000-%012d", i), payload)
		m.Metadata.Set(outbox.MetadataKey, fmt.Sprintf("k%d", i%64))
		return m
	}
	b.Run("Sync", func(b *testing.B) {
		bb := setup(b)
		pub, err := kafka.NewPublisher(bb.cfg)
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
		pub, err := kafka.NewPublisher(bb.cfg)
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
