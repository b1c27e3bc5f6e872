package redisstream

import (
	"context"
	"net/url"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// Features is what a Redis Streams broker promises.
var Features = outboxbroker.Features{
	NativeDedup: false,
	DedupSlot:   "stream entry fields _watermill_message_uuid and outbox_event_id",
	PerKeyOrder: true,
	OrderScope:  "per stream (topic), for one consumer of the group; claims of pending entries can reorder",
	Subscriber:  true,
	Durable:     false,
}

func init() {
	outboxbroker.Register("redis", open)
	outboxbroker.Register("rediss", open)
}

// open serves redis[s]://[:password@]host:6379/db?maxlen=N&group=NAME&consumer=NAME.
func open(_ context.Context, u *url.URL, opts outboxbroker.Options) (*outboxbroker.Broker, error) {
	p := outboxbroker.NewParams(u)
	cfg := Config{
		MaxLen:        int64(p.Int("maxlen", 0, 0, 1<<62)),
		ConsumerGroup: p.String("group", opts.ConsumerGroup),
		Consumer:      p.String("consumer", ""),
		Addr:          opts.Addr,
		Logger:        opts.Logger,
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	cfg.URL = outboxbroker.BaseURL(u)
	return outboxbroker.NewBroker(Features,
		func() (message.Publisher, error) { return NewPublisher(cfg) },
		func() (message.Subscriber, error) { return NewSubscriber(cfg) })
}
