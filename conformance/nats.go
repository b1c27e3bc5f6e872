package conformance

import (
	"context"
	"testing"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	bnats "github.com/outboxkit/outboxkit/brokers/nats"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// NATS returns the broker side of a cell for NATS JetStream at
// outboxtest.NATSURL (OUTBOX_TEST_NATS_URL), built directly on
// watermill-nats/v2 through the project's broker module (Nats-Msg-Id = the
// event id, or "<event id>/resend-<n>" for a resend: DedupMarshaler). Each test
// gets its own stream (file storage, 10-minute duplicate window) named after
// the test's id, with subject "<id>.events".
func NATS() Broker {
	b := NATSAt(outboxtest.NATSURL())
	b.Services = []string{outboxtest.NATS}
	b.Addr = outboxtest.ServiceAddr(outboxtest.NATS)
	return b
}

// NATSAt is NATS for the JetStream server at url
// (nats://[user:password@]host:4222; query parameters are ignored). It
// names no Services: the caller checks that the server is reachable.
func NATSAt(url string) Broker {
	url, addr := baseURL(url, "4222")
	return Broker{
		Name:     "nats",
		Features: Features{NativeDedup: true, PerKeyOrder: true, Networked: true},
		Addr:     addr,
		Open:     func(t testing.TB, id string) BrokerInstance { return openNATS(t, url, id) },
	}
}

type natsInstance struct {
	url, stream, topic string
	js                 jetstream.JetStream
}

func openNATS(t testing.TB, url, id string) BrokerInstance {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := &natsInstance{url: url, stream: id, topic: id + ".events", js: js}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: id, Subjects: []string{id + ".>"}, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute,
	}); err != nil {
		t.Fatalf("create stream %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, id)
	})
	return n
}

func (n *natsInstance) Topic() string { return n.topic }

func (n *natsInstance) NewPublisher(t testing.TB, addr string) message.Publisher {
	t.Helper()
	url := n.url
	if addr != "" {
		url = withHost(n.url, addr)
	}
	// The project's broker module, with its durable defaults (DedupMarshaler).
	pub, err := bnats.NewPublisher(bnats.Config{
		URL: url, PublishTimeout: 2 * time.Second,
		Options: []nats.Option{nats.Timeout(2 * time.Second), nats.ReconnectWait(100 * time.Millisecond)},
	})
	if err != nil {
		t.Fatalf("NATS publisher: %v", err)
	}
	t.Cleanup(func() { pub.Close() })
	return pub
}

func (n *natsInstance) Consume(t testing.TB) <-chan Received {
	t.Helper()
	ctx := context.Background()
	cons, err := n.js.OrderedConsumer(ctx, n.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{n.topic}, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatalf("consumer on %s: %v", n.stream, err)
	}
	out := make(chan Received, 4096)
	var unm wmnats.NATSMarshaler
	cc, err := cons.Consume(func(m jetstream.Msg) {
		msg, err := unm.Unmarshal(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		if err != nil {
			t.Errorf("unreadable message on %s: %v", n.topic, err)
			return
		}
		out <- Received{UUID: msg.UUID, DedupID: m.Headers().Get(nats.MsgIdHdr), Payload: msg.Payload, Metadata: msg.Metadata}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return out
}
