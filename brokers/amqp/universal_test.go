package amqp_test

import (
	"context"
	"sync"
	"testing"

	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	amqp "github.com/rabbitmq/amqp091-go"

	outboxamqp "github.com/outboxkit/outboxkit/brokers/amqp"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// queues records the durable queues a run declares, to delete them after.
type queues struct {
	mu    sync.Mutex
	names map[string]bool
}

func (q *queues) add(group, topic string) {
	q.mu.Lock()
	q.names[outboxamqp.QueueName(group, topic)] = true
	q.mu.Unlock()
}

type recordingSubscriber struct {
	*wmamqp.Subscriber
	group  string
	queues *queues
}

func (s recordingSubscriber) SubscribeInitialize(topic string) error {
	s.queues.add(s.group, topic)
	return s.Subscriber.SubscribeInitialize(topic)
}

func (s recordingSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.queues.add(s.group, topic)
	return s.Subscriber.Subscribe(ctx, topic)
}

type recordingPublisher struct {
	*outboxamqp.Publisher
	group  string
	queues *queues
}

func (p recordingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.queues.add(p.group, topic)
	return p.Publisher.Publish(topic, msgs...)
}

// TestUniversal runs Watermill's universal Pub/Sub suite against the AMQP
// module's publisher and subscriber, on an exchange of its own. Features
// are what the module promises (README.md): one durable queue per consumer
// group and topic, shared by the group's subscribers (consumer groups);
// queue order with prefetch 1 for one subscriber; messages kept in the
// queue. A subscriber outside a group is one of the run's default group
// (RabbitMQ has no subscription without a queue). A new consumer group's
// queue only holds what was published after it was declared, so a new
// subscriber does not receive old messages. ForceShort: TestPublisherClose
// publishes 10000 confirmed messages, about 13s on an idle 2-core machine,
// too close to the suite's 45s read deadline when CI is loaded.
func TestUniversal(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.AMQP)
	name := outboxtest.UniqueName("universal")
	q := &queues{names: map[string]bool{}}
	t.Cleanup(func() {
		conn, err := amqp.Dial(outboxtest.AMQPURL())
		if err != nil {
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		for n := range q.names {
			_, _ = ch.QueueDelete(n, false, false, false)
		}
		_ = ch.ExchangeDelete(name+".x", false, false)
	})
	pubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		cfg := outboxamqp.Config{URL: outboxtest.AMQPURL(), Exchange: name + ".x", ConsumerGroup: group}
		pub, err := outboxamqp.NewPublisher(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := outboxamqp.NewSubscriber(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return recordingPublisher{pub, group, q}, recordingSubscriber{sub, group, q}
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		ForceShort:                          true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return pubSub(t, name)
	}, pubSub)
}
