package kafka_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outboxkit/outboxkit/brokers/kafka"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// TestUniversal runs Watermill's universal Pub/Sub suite against the Kafka
// module's publisher and subscriber on an in-process kfake cluster that
// creates topics on first use, with one partition each. Features are what
// the module promises (README.md): consumer groups; order within a
// partition (the module keeps one key on one partition; the suite's
// messages have no key, so its topics have one partition); records kept,
// and a new group starts at the oldest offset. A subscriber outside a group
// is a group of its own. ForceShort for CI time: the long variants pass
// too (40s on an idle 2-core machine, TestContinueAfterErrors alone 36s of
// consumer-group rejoins).
//
// A subscriber joins its consumer group once per topic it subscribes to:
// with one group for several topics (TestTopic subscribes one subscriber to
// two), the second subscription's join rebalances the group while the first
// one's session runs, and on a loaded machine that rebalance can outlast the
// suite's 15 s read timeout. So the suite's subscribers use one group per
// group and topic (topicGroups), which is what a service gets with one
// subscriber per topic (README.md says so).
func TestUniversal(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	pubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		cfg := kafka.Config{Brokers: c.ListenAddrs(), ConsumerGroup: group,
			TopicDetail: &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}}
		pub, err := kafka.NewPublisher(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return pub, &topicGroups{cfg: cfg, subs: map[string]message.Subscriber{}}
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    true,
		ForceShort:                          true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return pubSub(t, outboxtest.UniqueName("solo"))
	}, pubSub)
}

// topicGroups is a subscriber that subscribes to each topic with a
// subscriber of its own, in the consumer group "<group>.<topic>".
type topicGroups struct {
	cfg  kafka.Config
	mu   sync.Mutex
	subs map[string]message.Subscriber
}

func (g *topicGroups) sub(topic string) (message.Subscriber, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.subs[topic]; ok {
		return s, nil
	}
	cfg := g.cfg
	cfg.ConsumerGroup += "." + topic
	s, err := kafka.NewSubscriber(cfg)
	if err != nil {
		return nil, err
	}
	g.subs[topic] = s
	return s, nil
}

func (g *topicGroups) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s, err := g.sub(topic)
	if err != nil {
		return nil, err
	}
	return s.Subscribe(ctx, topic)
}

func (g *topicGroups) SubscribeInitialize(topic string) error {
	s, err := g.sub(topic)
	if err != nil {
		return err
	}
	if si, ok := s.(message.SubscribeInitializer); ok {
		return si.SubscribeInitialize(topic)
	}
	return nil
}

func (g *topicGroups) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for _, s := range g.subs {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
