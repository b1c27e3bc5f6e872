package memory_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/brokers/memory"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

func eventMessage(i int) *message.Message {
	id := fmt.Sprintf("00000000-0000-7000-8000-%012d", i)
	m := message.NewMessage(id, []byte(fmt.Sprintf(`{"n":%d}`, i)))
	m.Metadata.Set(outbox.MetadataEventID, id)
	m.Metadata.Set(outbox.MetadataEventType, "t")
	m.Metadata.Set(outbox.MetadataKey, "k")
	return m
}

func collect(t *testing.T, ch <-chan *message.Message, n int) map[string]*message.Message {
	t.Helper()
	got := map[string]*message.Message{}
	for len(got) < n {
		select {
		case m := <-ch:
			got[m.UUID] = m
			m.Ack()
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d of %d messages", len(got), n)
		}
	}
	return got
}

func TestPublishSubscribe(t *testing.T) {
	t.Parallel()
	ps, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	topic := outboxtest.UniqueName("mem")
	const n = 20
	for i := range n {
		if err := ps.Publish(topic, eventMessage(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	t.Run("LateSubscriberGetsHistory", func(t *testing.T) {
		ch, err := ps.Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		got := collect(t, ch, n)
		for i := range n {
			want := eventMessage(i)
			m, ok := got[want.UUID]
			if !ok {
				t.Fatalf("missing %s", want.UUID)
			}
			if string(m.Payload) != string(want.Payload) || m.Metadata.Get(outbox.MetadataKey) != "k" {
				t.Fatalf("message %s: payload %q metadata %v", m.UUID, m.Payload, m.Metadata)
			}
		}
	})

	t.Run("FanOutNoConsumerGroups", func(t *testing.T) {
		// A second subscriber gets every message again: no competing consumers.
		ch, err := ps.Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if got := collect(t, ch, n); len(got) != n {
			t.Fatalf("second subscriber got %d", len(got))
		}
	})

	t.Run("NoDedup", func(t *testing.T) {
		topic := outboxtest.UniqueName("memdup")
		for range 2 {
			if err := ps.Publish(topic, eventMessage(1)); err != nil {
				t.Fatal(err)
			}
		}
		ch, err := ps.Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for seen < 2 {
			select {
			case m := <-ch:
				m.Ack()
				seen++
			case <-time.After(10 * time.Second):
				t.Fatalf("got %d copies, want 2 (the memory broker does not deduplicate)", seen)
			}
		}
	})
}

func TestNackRedelivers(t *testing.T) {
	t.Parallel()
	ps, _ := memory.New(memory.Config{})
	defer ps.Close()
	topic := outboxtest.UniqueName("memnack")
	if err := ps.Publish(topic, eventMessage(1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := ps.Subscribe(ctx, topic)
	first := <-ch
	first.Nack()
	select {
	case again := <-ch:
		again.Ack()
		if again.UUID != first.UUID {
			t.Fatalf("got %q", again.UUID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nacked message not redelivered")
	}
}

func TestBuiltConfig(t *testing.T) {
	t.Parallel()
	c := memory.Config{}.PubSubConfig()
	if !c.Persistent {
		t.Fatal("not persistent: messages published before a Subscribe would be dropped")
	}
	if _, err := memory.New(memory.Config{OutputBuffer: -1}); err == nil {
		t.Fatal("negative OutputBuffer accepted")
	}
}

func TestOpenURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := outboxtest.UniqueName("shared")
	a, err := outboxbroker.Open(ctx, "memory://"+name, outboxbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := outboxbroker.Open(ctx, "memory://"+name+"?buffer=4", outboxbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := outboxbroker.Open(ctx, "memory://"+name+"-other", outboxbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if a.Features.PerKeyOrder || a.Features.NativeDedup || a.Features.Durable || !a.Features.Subscriber {
		t.Fatalf("features overpromise: %+v", a.Features)
	}
	if err := a.Publisher.Publish("t", eventMessage(1)); err != nil {
		t.Fatal(err)
	}
	if err := other.Publisher.Publish("t", eventMessage(2)); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := b.Subscriber.Subscribe(sctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, ch, 1)
	if _, ok := got[eventMessage(1).UUID]; !ok {
		t.Fatalf("shared broker delivered %v, want the message published through the other handle", got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// b still works after a closed: the shared broker is reference counted.
	if err := b.Publisher.Publish("t", eventMessage(3)); err != nil {
		t.Fatalf("publish after the other handle closed: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	t.Run("BadParam", func(t *testing.T) {
		_, err := outboxbroker.Open(ctx, "memory://x?buffer=-3", outboxbroker.Options{})
		var pe *outboxbroker.ParamError
		if !errors.As(err, &pe) || pe.Param != "buffer" {
			t.Fatalf("err = %v", err)
		}
	})
}
