package conformance

import (
	"context"
	"maps"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/brokers/memory"
)

// Memory returns the broker side of a cell for brokers/memory (Watermill's
// gochannel, persistent, with the module's defaults): one in-process broker
// per test. It is not networked, so the broker-cut tests are skipped and the
// SIGKILL test checks the subprocess relay's publish journal (the child's
// broker lives and dies with it). It promises neither order (gochannel
// delivers each message from its own goroutine) nor dedup nor an id slot
// beyond Watermill's message UUID. It supersedes GoChannel in the matrix.
func Memory() Broker {
	return Broker{
		Name:     "memory",
		Features: Features{NativeDedup: false, PerKeyOrder: false, Networked: false},
		Open: func(t testing.TB, id string) BrokerInstance {
			t.Helper()
			ps, err := memory.New(memory.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ps.Close() })
			return &memoryInstance{ps: ps, topic: id}
		},
	}
}

type memoryInstance struct {
	ps    *gochannel.GoChannel
	topic string
}

func (m *memoryInstance) Topic() string { return m.topic }

// NewPublisher returns the test's broker behind a wrapper whose Close is a
// no-op, so that one relay closing it does not end the test's broker.
func (m *memoryInstance) NewPublisher(t testing.TB, addr string) message.Publisher {
	if addr != "" {
		t.Fatalf("memory broker is in-process: cannot dial %s", addr)
	}
	return noClose{m.ps}
}

func (m *memoryInstance) Consume(t testing.TB) <-chan Received {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	msgs, err := m.ps.Subscribe(ctx, m.topic)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Received, 1024)
	go func() {
		defer close(out)
		for msg := range msgs {
			out <- Received{UUID: msg.UUID, Payload: msg.Payload, Metadata: maps.Clone(map[string]string(msg.Metadata))}
			msg.Ack()
		}
	}()
	return out
}
