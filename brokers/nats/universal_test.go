package nats_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/nats-io/nats.go"

	outboxnats "github.com/outboxkit/outboxkit/brokers/nats"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// streams provisions one memory stream per topic, as a deployment calls
// EnsureStream for each topic before use. One stream per topic, not one for
// all: JetStream drops a Nats-Msg-Id it saw on any subject of the same
// stream, and the suite publishes copies of a message (same UUID) to
// several topics.
type streams struct {
	t     *testing.T
	cfg   outboxnats.Config
	mu    sync.Mutex
	names map[string]string // topic -> stream
}

func (s *streams) ensure(topic string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.names[topic]; ok {
		return nil
	}
	name := outboxnats.ConsumerName("u", topic)
	if err := outboxnats.EnsureStream(context.Background(), s.cfg, outboxnats.StreamConfig{Name: name, Subjects: []string{topic}, MemoryStorage: true}); err != nil {
		return err
	}
	s.names[topic] = name
	return nil
}

func (s *streams) deleteAll() {
	nc, err := nats.Connect(s.cfg.URL)
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range s.names {
		_ = js.DeleteStream(name)
	}
}

type provisionedPublisher struct {
	*outboxnats.Publisher
	streams *streams
}

func (p provisionedPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.streams.ensure(topic); err != nil {
		return err
	}
	return p.Publisher.Publish(topic, msgs...)
}

type provisionedSubscriber struct {
	*outboxnats.Subscriber
	streams *streams
}

// SubscribeInitialize implements message.SubscribeInitializer: the suite
// calls it before it publishes.
func (s provisionedSubscriber) SubscribeInitialize(topic string) error {
	return s.streams.ensure(topic)
}

func (s provisionedSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := s.streams.ensure(topic); err != nil {
		return nil, err
	}
	return s.Subscriber.Subscribe(ctx, topic)
}

// TestUniversal runs Watermill's universal Pub/Sub suite against the NATS
// module's publisher and subscriber. Features are what the module promises
// (README.md): durable consumers shared by the subscribers of one Durable
// (consumer groups), stream order with MaxAckPending 1, messages kept in
// the stream for new consumers. Not exactly once: the module nacks nothing
// on a cancelled subscription, and a redelivery is a duplicate for the
// suite. AckWait is 1s instead of 30s: a message watermill-nats held when
// its subscription's context ended is not nacked, so JetStream redelivers
// it only after AckWait, and with MaxAckPending 1 the topic waits that long
// (TestSubscribeCtx waits 15s; README.md says so). ForceShort: with
// MaxAckPending 1 a consumer hands out one message per ack round trip, so
// the long variants (5000 and 10000 messages) take minutes on a loaded
// CI machine.
func TestUniversal(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.NATS)
	cfg := outboxnats.Config{URL: outboxtest.NATSURL(), AckWait: time.Second}
	st := &streams{t: t, cfg: cfg, names: map[string]string{}}
	t.Cleanup(st.deleteAll)
	prefix := outboxtest.UniqueName("universal")
	pubSub := func(t *testing.T, durable string) (message.Publisher, message.Subscriber) {
		c := cfg
		c.Durable = durable
		pub, err := outboxnats.NewPublisher(c)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := outboxnats.NewSubscriber(c)
		if err != nil {
			t.Fatal(err)
		}
		return provisionedPublisher{pub, st}, provisionedSubscriber{sub, st}
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    true,
		ForceShort:                          true,
		GenerateTopicFunc:                   func(tc tests.TestContext) string { return prefix + "." + string(tc.TestID) },
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		// Its own durable: a subscriber outside any group gets every message.
		return pubSub(t, outboxtest.UniqueName("solo"))
	}, pubSub)
}
