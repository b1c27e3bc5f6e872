// Package outboxbrokertest is the shared test suite of the broker modules'
// outbox.AsyncPublisher implementations: each module runs
// RunAsyncPublisher, and BenchmarkPublish, against its real broker.
package outboxbrokertest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// HangGuard bounds every wait of the suite: a hang fails the test instead
// of the run. It is not a performance assertion.
const HangGuard = time.Minute

// AsyncHarness is what a broker module gives the suite.
type AsyncHarness struct {
	// New returns a new publisher and a topic of its own; the suite closes
	// the publisher.
	New func(t testing.TB) (pub outbox.AsyncPublisher, topic string)

	// Read returns the event ids (metadata outbox_event_id) of the first n
	// messages stored on topic, in the broker's order (per partition, for
	// brokers that order per partition).
	Read func(t testing.TB, topic string, n int) []string

	// Refused returns a topic and a message the broker refuses, given the
	// test's topic (e.g. a key of another type, an oversized record).
	Refused func(t testing.TB, topic string) (string, *message.Message)

	// ErrClosed is the module's error for a publish after Close.
	ErrClosed error
}

// Message returns the i-th test message: id 00000000-0000-7000-8000-<i>,
// key in the event metadata, and a payload of size bytes.
func Message(i int, key string, size int) *message.Message {
	id := fmt.Sprintf("00000000-0000-7000-8000-%012d", i)
	m := message.NewMessage(id, make([]byte, size))
	m.Metadata.Set(outbox.MetadataEventID, id)
	m.Metadata.Set(outbox.MetadataEventType, "invoice.issued")
	m.Metadata.Set(outbox.MetadataKey, key)
	return m
}

func index(t testing.TB, id string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(id, "00000000-0000-7000-8000-%012d", &i); err != nil {
		t.Fatalf("event id %q: %v", id, err)
	}
	return i
}

// waitAll waits for every publish, in order, and returns their errors.
func waitAll(t testing.TB, waits []func(context.Context) error) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), HangGuard)
	defer cancel()
	errs := make([]error, len(waits))
	for i, wait := range waits {
		errs[i] = wait(ctx)
		if errors.Is(errs[i], context.DeadlineExceeded) && ctx.Err() != nil {
			t.Fatalf("wait %d hung", i)
		}
	}
	return errs
}

// RunAsyncPublisher runs the suite: many publishes in flight keep each
// key's order, a refused publish fails its own wait only, and Close while
// publishes are in flight resolves every wait and does not hang.
func RunAsyncPublisher(t *testing.T, h AsyncHarness) {
	t.Run("ManyInFlightKeepKeyOrder", func(t *testing.T) {
		t.Parallel()
		pub, topic := h.New(t)
		defer pub.Close()
		const n, keys = 3000, 8
		waits := make([]func(context.Context) error, n)
		for i := range n {
			var err error
			if waits[i], err = pub.PublishAsync(topic, Message(i, fmt.Sprintf("key-%d", i%keys), 64)); err != nil {
				t.Fatalf("PublishAsync %d: %v", i, err)
			}
		}
		for i, err := range waitAll(t, waits) {
			if err != nil {
				t.Fatalf("wait %d: %v", i, err)
			}
		}
		last := map[int]int{}
		seen := map[int]bool{}
		for _, id := range h.Read(t, topic, n) {
			i := index(t, id)
			if prev, ok := last[i%keys]; ok && prev > i {
				t.Fatalf("key-%d: event %d stored after %d", i%keys, i, prev)
			}
			last[i%keys], seen[i] = i, true
		}
		if len(seen) != n {
			t.Fatalf("%d distinct events stored, want %d", len(seen), n)
		}
	})

	t.Run("RefusedFailsItsOwnWait", func(t *testing.T) {
		t.Parallel()
		pub, topic := h.New(t)
		defer pub.Close()
		const refused = 2
		waits := make([]func(context.Context) error, 4)
		for i := range waits {
			to, msg := topic, Message(i, "k", 64)
			if i == refused {
				to, msg = h.Refused(t, topic)
			}
			var err error
			if waits[i], err = pub.PublishAsync(to, msg); err != nil {
				t.Fatalf("PublishAsync %d: %v", i, err)
			}
		}
		for i, err := range waitAll(t, waits) {
			if (i == refused) != (err != nil) {
				t.Fatalf("wait %d: %v (only wait %d must fail)", i, err, refused)
			}
		}
		h.Read(t, topic, len(waits)-1)
	})

	t.Run("CloseWhileInFlight", func(t *testing.T) {
		t.Parallel()
		pub, topic := h.New(t)
		const n = 2000
		waits := make([]func(context.Context) error, n)
		for i := range n {
			var err error
			if waits[i], err = pub.PublishAsync(topic, Message(i, fmt.Sprintf("key-%d", i%5), 64)); err != nil {
				t.Fatal(err)
			}
		}
		closed := make(chan error, 1)
		go func() { closed <- pub.Close() }()
		for i, err := range waitAll(t, waits) {
			if err != nil {
				t.Fatalf("wait %d after Close: %v (Close must deliver what it was handed)", i, err)
			}
		}
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
		case <-time.After(HangGuard):
			t.Fatal("Close hung")
		}
		if _, err := pub.PublishAsync(topic, Message(0, "k", 64)); !errors.Is(err, h.ErrClosed) {
			t.Fatalf("PublishAsync after Close: %v, want %v", err, h.ErrClosed)
		}
		h.Read(t, topic, n)
	})
}

// BenchmarkPublish compares Publish (each message acknowledged before the
// next is sent) with PublishAsync (up to 1024 in flight), 300-byte
// messages over 64 keys, and reports msgs/s.
func BenchmarkPublish(b *testing.B, h AsyncHarness) {
	b.Run("Sync", func(b *testing.B) {
		pub, topic := h.New(b)
		defer pub.Close()
		b.ResetTimer()
		for i := range b.N {
			if err := pub.Publish(topic, Message(i, fmt.Sprintf("k%d", i%64), 300)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("Async", func(b *testing.B) {
		pub, topic := h.New(b)
		defer pub.Close()
		waits := make(chan func(context.Context) error, 1024)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for wait := range waits {
				if err := wait(context.Background()); err != nil {
					b.Error(err)
				}
			}
		}()
		b.ResetTimer()
		for i := range b.N {
			wait, err := pub.PublishAsync(topic, Message(i, fmt.Sprintf("k%d", i%64), 300))
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
