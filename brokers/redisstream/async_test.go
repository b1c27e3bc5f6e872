package redisstream_test

import (
	"context"
	"errors"
	"maps"
	"testing"

	wrs "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/brokers/redisstream"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker/outboxbrokertest"
)

// asyncHarness runs the shared AsyncPublisher suite on a stream per test;
// Redis refuses an XADD to a key that holds a string.
func asyncHarness() outboxbrokertest.AsyncHarness {
	return outboxbrokertest.AsyncHarness{
		New: func(t testing.TB) (outbox.AsyncPublisher, string) {
			b := setup(t)
			pub, err := redisstream.NewPublisher(b.cfg)
			if err != nil {
				t.Fatal(err)
			}
			return pub, b.topic
		},
		Read: func(t testing.TB, topic string, n int) []string {
			b := setup(t)
			entries, err := b.rdb.XRange(context.Background(), topic, "-", "+").Result()
			if err != nil || len(entries) != n {
				t.Fatalf("XRANGE %s: %d entries, %v; want %d", topic, len(entries), err, n)
			}
			ids := make([]string, n)
			for i, e := range entries {
				ids[i], _ = e.Values[outbox.MetadataEventID].(string)
			}
			return ids
		},
		Refused: func(t testing.TB, topic string) (string, *message.Message) {
			b := setup(t)
			notAStream := topic + "-string"
			if err := b.rdb.Set(context.Background(), notAStream, "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.rdb.Del(context.Background(), notAStream) })
			return notAStream, outboxbrokertest.Message(99, "k", 64)
		},
		ErrClosed: redisstream.ErrPublisherClosed,
	}
}

func TestPublishAsync(t *testing.T) {
	t.Parallel()
	outboxbrokertest.RunAsyncPublisher(t, asyncHarness())
}

// TestPublishAsyncSameFieldsAsPublish: an entry written by PublishAsync
// has the fields Publish writes.
func TestPublishAsyncSameFieldsAsPublish(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pub, err := redisstream.NewPublisher(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(b.topic, eventMessage(1, "k")); err != nil {
		t.Fatal(err)
	}
	wait, err := pub.PublishAsync(b.topic, eventMessage(1, "k"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), outboxbrokertest.HangGuard)
	defer cancel()
	if err := wait(ctx); err != nil {
		t.Fatal(err)
	}
	entries, err := b.rdb.XRange(ctx, b.topic, "-", "+").Result()
	if err != nil || len(entries) != 2 {
		t.Fatalf("XRANGE: %d entries, %v", len(entries), err)
	}
	if len(entries[0].Values) != len(entries[1].Values) {
		t.Fatalf("Publish wrote %v, PublishAsync %v", entries[0].Values, entries[1].Values)
	}
	for k, v := range entries[0].Values {
		if k == "metadata" {
			continue // a msgpack map: its bytes follow map iteration order; compared decoded below
		}
		if entries[1].Values[k] != v {
			t.Fatalf("field %s: Publish wrote %q, PublishAsync %q", k, v, entries[1].Values[k])
		}
	}
	var decoded [2]*message.Message
	for i, e := range entries {
		if decoded[i], err = (wrs.DefaultMarshallerUnmarshaller{}).Unmarshal(e.Values); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if !maps.Equal(decoded[0].Metadata, decoded[1].Metadata) {
		t.Fatalf("metadata: Publish wrote %v, PublishAsync %v", decoded[0].Metadata, decoded[1].Metadata)
	}
}

// TestPublishAsyncUnreachable: with the server unreachable, every queued
// publish fails on its wait and Close does not hang.
func TestPublishAsyncUnreachable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Addr = "127.0.0.1:1"
	pub, err := redisstream.NewPublisher(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100 // each pipeline fails after go-redis's dial retries
	waits := make([]func(context.Context) error, n)
	for i := range n {
		if waits[i], err = pub.PublishAsync(b.topic, eventMessage(i, "k")); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- pub.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), outboxbrokertest.HangGuard)
	defer cancel()
	for i, wait := range waits {
		err := wait(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("wait %d hung", i)
		}
		if err == nil {
			t.Fatalf("wait %d: nil with the server unreachable", i)
		}
	}
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close hung")
	}
}

// BenchmarkPublish compares Publish with PublishAsync:
//
//	go test -run '^$' -bench Publish -benchtime 20000x ./brokers/redisstream
func BenchmarkPublish(b *testing.B) { outboxbrokertest.BenchmarkPublish(b, asyncHarness()) }
