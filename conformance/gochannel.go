package conformance

import (
	"context"
	"maps"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

// GoChannel returns the broker side of a cell for Watermill's in-memory
// gochannel Pub/Sub (persistent, publish blocks until the reader acked, so
// order is kept). It is not networked: broker-cut tests are skipped and the
// SIGKILL test checks the subprocess relay's publish journal.
func GoChannel() Broker {
	return Broker{
		Name:     "gochannel",
		Features: Features{NativeDedup: false, PerKeyOrder: true, Networked: false},
		Open: func(t testing.TB, id string) BrokerInstance {
			ps := gochannel.NewGoChannel(gochannel.Config{Persistent: true, BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
			t.Cleanup(func() { ps.Close() })
			return &goChannelInstance{ps: ps, topic: id}
		},
	}
}

type goChannelInstance struct {
	ps    *gochannel.GoChannel
	topic string
}

func (g *goChannelInstance) Topic() string { return g.topic }

// NewPublisher returns the shared in-memory Pub/Sub behind a wrapper whose
// Close is a no-op, so that one relay closing it does not end the test's.
func (g *goChannelInstance) NewPublisher(t testing.TB, addr string) message.Publisher {
	if addr != "" {
		t.Fatalf("gochannel is in-memory: cannot dial %s", addr)
	}
	return noClose{g.ps}
}

func (g *goChannelInstance) Consume(t testing.TB) <-chan Received {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	msgs, err := g.ps.Subscribe(ctx, g.topic)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Received, 1024)
	go func() {
		defer close(out)
		for m := range msgs {
			out <- Received{UUID: m.UUID, Payload: m.Payload, Metadata: maps.Clone(map[string]string(m.Metadata))}
			m.Ack()
		}
	}()
	return out
}

type noClose struct{ message.Publisher }

func (noClose) Close() error { return nil }
