package amqp

import (
	"context"
	"net/url"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// Features is what a RabbitMQ broker promises.
var Features = outboxbroker.Features{
	NativeDedup: false,
	DedupSlot:   "AMQP message-id property (and _watermill_message_uuid header)",
	PerKeyOrder: true,
	OrderScope:  "per queue, with one consumer and prefetch 1 (the defaults); competing consumers break it",
	Subscriber:  true,
	Durable:     true,
}

func init() {
	outboxbroker.Register("amqp", open)
	outboxbroker.Register("amqps", open)
}

// open serves amqp[s]://user:pass@host:port/vhost?params. Parameters:
//
//	exchange            durable topic exchange (default "outbox")
//	group               queue name prefix (default "outbox")
//	skip_queue_declare  publisher does not declare queues (default false)
//	publish_timeout     confirm wait (default 15s)
func open(_ context.Context, u *url.URL, opts outboxbroker.Options) (*outboxbroker.Broker, error) {
	p := outboxbroker.NewParams(u)
	cfg := Config{
		Exchange:         p.String("exchange", ""),
		ConsumerGroup:    p.String("group", opts.ConsumerGroup),
		SkipQueueDeclare: p.Bool("skip_queue_declare", false),
		PublishTimeout:   p.Duration("publish_timeout", 15*time.Second, time.Millisecond),
		Addr:             opts.Addr,
		Logger:           opts.Logger,
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	cfg.URL = outboxbroker.BaseURL(u)
	return outboxbroker.NewBroker(Features,
		func() (message.Publisher, error) { return NewPublisher(cfg) },
		func() (message.Subscriber, error) { return NewSubscriber(cfg) })
}
