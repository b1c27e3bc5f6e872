package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	bredis "github.com/outboxkit/outboxkit/brokers/redisstream"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

// RedisStream returns the broker side of a cell for brokers/redisstream (one
// XADD per message, the event id in the entry field outbox_event_id) against
// Redis at outboxtest.RedisURL (OUTBOX_TEST_REDIS_URL). Each test gets its
// own stream, named after the test's id and deleted when the test ends.
//
// The reader is a plain go-redis XREAD from the first entry (no consumer
// group), so it sees the stream's order, which is publish order. Redis does
// not deduplicate by event id.
func RedisStream() Broker {
	b := RedisStreamAt(outboxtest.RedisURL())
	b.Services = []string{outboxtest.Redis}
	b.Addr = outboxtest.ServiceAddr(outboxtest.Redis)
	return b
}

// RedisStreamAt is RedisStream for the Redis server at url
// (redis://[user:password@]host:6379/db; query parameters are ignored). It
// names no Services: the caller checks that the server is reachable.
func RedisStreamAt(url string) Broker {
	url, addr := baseURL(url, "6379")
	return Broker{
		Name: "redis",
		Features: Features{
			NativeDedup: false,
			DedupSlot:   "stream entry field outbox_event_id",
			PerKeyOrder: true,
			Networked:   true,
		},
		Addr: addr,
		Open: func(t testing.TB, id string) BrokerInstance { return openRedisStream(t, url, id) },
	}
}

type redisInstance struct{ url, stream string }

func openRedisStream(t testing.TB, url, id string) BrokerInstance {
	t.Helper()
	r := &redisInstance{url: url, stream: id}
	if !childMode() {
		t.Cleanup(func() {
			cl := redisClient(t, url)
			_ = cl.Del(context.Background(), r.stream).Err()
		})
	}
	return r
}

func redisClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("Redis URL: %v", err)
	}
	cl := redis.NewClient(opts)
	t.Cleanup(func() { cl.Close() })
	return cl
}

func (r *redisInstance) Topic() string { return r.stream }

func (r *redisInstance) NewPublisher(t testing.TB, addr string) message.Publisher {
	t.Helper()
	pub, err := bredis.NewPublisher(bredis.Config{URL: r.url, Addr: addr})
	if err != nil {
		t.Fatalf("Redis publisher: %v", err)
	}
	t.Cleanup(func() { pub.Close() })
	return pub
}

func (r *redisInstance) Consume(t testing.TB) <-chan Received {
	t.Helper()
	cl := redisClient(t, r.url)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan Received, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var unm bredis.Marshaller
		last := "0"
		for ctx.Err() == nil {
			res, err := cl.XRead(ctx, &redis.XReadArgs{Streams: []string{r.stream, last}, Count: 500, Block: 200 * time.Millisecond}).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			for _, s := range res {
				for _, m := range s.Messages {
					last = m.ID
					msg, err := unm.Unmarshal(m.Values)
					if err != nil {
						continue // counted as missing by the test that waits for it
					}
					id, _ := m.Values[outbox.MetadataEventID].(string)
					select {
					case out <- Received{UUID: msg.UUID, DedupID: id, Payload: msg.Payload, Metadata: msg.Metadata}:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}
