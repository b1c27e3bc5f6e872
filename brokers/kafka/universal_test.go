package kafka_test

import (
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
		sub, err := kafka.NewSubscriber(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
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
