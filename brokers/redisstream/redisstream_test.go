package redisstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/outboxkit/outboxkit/brokers/redisstream"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

type bundle struct {
	cfg   redisstream.Config
	topic string
	rdb   *redis.Client
}

func setup(t testing.TB) *bundle {
	t.Helper()
	outboxtest.RequireService(t, outboxtest.Redis)
	opts, err := redis.ParseURL(outboxtest.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{
		cfg:   redisstream.Config{URL: outboxtest.RedisURL(), ConsumerGroup: "g"},
		topic: outboxtest.UniqueName("rs"),
		rdb:   redis.NewClient(opts),
	}
	t.Cleanup(func() {
		b.rdb.Del(context.Background(), b.topic)
		b.rdb.Close()
	})
	return b
}

func eventMessage(i int, key string) *message.Message {
	id := fmt.Sprintf("00000000-0000-7000-8000-%012d", i)
	m := message.NewMessage(id, []byte(fmt.Sprintf("{\"n\":%d,\"raw\":\"\x00\xff\"}", i)))
	m.Metadata.Set(outbox.MetadataEventID, id)
	m.Metadata.Set(outbox.MetadataEventType, "invoice.issued")
	m.Metadata.Set(outbox.MetadataKey, key)
	m.Metadata.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	return m
}

func TestPublishSubscribe(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	pub, err := redisstream.NewPublisher(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const n = 20
	for i := range n {
		if err := pub.Publish(b.topic, eventMessage(i, "k")); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}

	t.Run("IndependentClient", func(t *testing.T) {
		entries, err := b.rdb.XRange(ctx, b.topic, "-", "+").Result()
		if err != nil || len(entries) != n {
			t.Fatalf("XRANGE: %d entries, %v", len(entries), err)
		}
		for i, e := range entries {
			want := eventMessage(i, "k")
			if e.Values[outbox.MetadataEventID] != want.UUID || e.Values["_watermill_message_uuid"] != want.UUID {
				t.Fatalf("entry %d: %v", i, e.Values)
			}
			if e.Values[outbox.MetadataKey] != "k" || e.Values[outbox.MetadataEventType] != "invoice.issued" {
				t.Fatalf("entry %d: %v", i, e.Values)
			}
			if e.Values["payload"] != string(want.Payload) {
				t.Fatalf("entry %d payload %q", i, e.Values["payload"])
			}
		}
	})

	t.Run("ConsumerGroup", func(t *testing.T) {
		sub, err := redisstream.NewSubscriber(b.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := sub.Subscribe(sctx, b.topic)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			select {
			case m := <-ch:
				want := eventMessage(i, "k")
				if m.UUID != want.UUID || !bytes.Equal(m.Payload, want.Payload) {
					t.Fatalf("message %d: %s %q", i, m.UUID, m.Payload)
				}
				for k, v := range want.Metadata {
					if m.Metadata.Get(k) != v {
						t.Fatalf("message %d: metadata %s = %q, want %q", i, k, m.Metadata.Get(k), v)
					}
				}
				m.Ack()
			case <-time.After(20 * time.Second):
				t.Fatalf("received %d of %d", i, n)
			}
		}
		// XACK happened: nothing pending in the group once the last ack is
		// processed.
		deadline := time.Now().Add(10 * time.Second)
		for {
			p, err := b.rdb.XPending(ctx, b.topic, "g").Result()
			if err != nil {
				t.Fatal(err)
			}
			if p.Count == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d entries still pending after acks", p.Count)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestMaxLenTrims(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.MaxLen = 10
	pub, err := redisstream.NewPublisher(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const n = 500
	for i := range n {
		if err := pub.Publish(b.topic, eventMessage(i, "k")); err != nil {
			t.Fatal(err)
		}
	}
	l, err := b.rdb.XLen(context.Background(), b.topic).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Approximate trimming keeps whole radix-tree nodes (100 entries by
	// default), so the stream is near, not at, MaxLen.
	if l >= n || l < 10 {
		t.Fatalf("XLEN %d after %d XADD with MAXLEN ~10", l, n)
	}
	if pc := b.cfg.PublisherConfig(nil); pc.DefaultMaxlen != 10 {
		t.Fatalf("DefaultMaxlen %d", pc.DefaultMaxlen)
	}
}

func TestOpenURL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	br, err := outboxbroker.Open(ctx, outboxtest.RedisURL()+"?maxlen=1000&group=g2", outboxbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	if err := br.Publisher.Publish(b.topic, eventMessage(1, "k")); err != nil {
		t.Fatal(err)
	}
	if l, _ := b.rdb.XLen(ctx, b.topic).Result(); l != 1 {
		t.Fatalf("XLEN %d", l)
	}
	for q, param := range map[string]string{"maxlen=-1": "maxlen", "maxlen=lots": "maxlen", "ttl=1": "ttl"} {
		_, err := outboxbroker.Open(ctx, "redis://:s3cret@127.0.0.1:6379/0?"+q, outboxbroker.Options{})
		var pe *outboxbroker.ParamError
		if !errors.As(err, &pe) || pe.Param != param {
			t.Errorf("%s: err = %v, want ParamError naming %q", q, err, param)
		}
	}
}
