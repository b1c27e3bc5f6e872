package redisstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/redis/go-redis/v9"

	"github.com/outboxkit/outboxkit/brokers/redisstream"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// TestUniversal runs Watermill's universal Pub/Sub suite against the Redis
// Streams module's publisher and subscriber. Features are what the module
// promises (README.md): consumer groups; stream order for one consumer of a
// group, not across several (each reads its own batches); entries kept in
// the stream, and a new group starts at the first entry. A subscriber
// outside a group is a group of its own. ForceShort: the long variants
// (5000 messages read by 50 consumers of a group, subscriptions closed and
// reopened mid-stream) wait for pending entries of closed consumers to be
// claimed (watermill-redisstream's defaults: idle for a minute, checked
// every 5s) and take over a minute each.
func TestUniversal(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.Redis)
	prefix := outboxtest.UniqueName("universal")
	t.Cleanup(func() {
		opts, err := redis.ParseURL(outboxtest.RedisURL())
		if err != nil {
			return
		}
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	pubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		// An entry a cancelled subscription read and never acknowledged is
		// claimed by the next consumer of the group after MaxIdleTime: the
		// suite's reads wait 15s, watermill-redisstream's default is 60s.
		cfg := redisstream.Config{URL: outboxtest.RedisURL(), ConsumerGroup: group, MaxIdleTime: time.Second, ClaimInterval: 200 * time.Millisecond}
		pub, err := redisstream.NewPublisher(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := redisstream.NewSubscriber(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    true,
		ForceShort:                          true,
		GenerateTopicFunc:                   func(tc tests.TestContext) string { return prefix + "-" + string(tc.TestID) },
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return pubSub(t, outboxtest.UniqueName("solo"))
	}, pubSub)
}
