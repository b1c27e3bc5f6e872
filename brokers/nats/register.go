package nats

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// Features is what a NATS JetStream broker promises.
var Features = outboxbroker.Features{
	NativeDedup: true,
	DedupSlot:   "Nats-Msg-Id header (stream duplicate window)",
	PerKeyOrder: true,
	OrderScope:  "per subject: the stream keeps publish order and a durable consumer with MaxAckPending 1 delivers in that order",
	Subscriber:  true,
	Durable:     true,
}

func init() { outboxbroker.Register("nats", open) }

// open serves nats://[user:pass@|token@]host:port?params. Parameters:
//
//	stream           stream name for ensure_stream (default: none)
//	subjects         comma-separated subjects of that stream (default: the stream name)
//	ensure_stream    create/update the stream at open (default false; needs stream)
//	duplicates       duplicate window, e.g. 10m (default 10m)
//	storage          file or memory (default file)
//	durable / group  durable consumer prefix (default "outbox")
//	ack_wait         redelivery timeout (default 30s)
//	max_ack_pending  (default 1)
//	max_deliver      (default -1, unlimited)
//	publish_timeout  (default 10s)
func open(ctx context.Context, u *url.URL, opts outboxbroker.Options) (*outboxbroker.Broker, error) {
	p := outboxbroker.NewParams(u)
	stream := p.String("stream", "")
	subjects := p.String("subjects", "")
	ensure := p.Bool("ensure_stream", false)
	dup := p.Duration("duplicates", DefaultDuplicateWindow, time.Second)
	storage := p.Enum("storage", "file", "file", "memory")
	durable := p.String("durable", "")
	group := p.String("group", "")
	cfg := Config{
		Addr:           opts.Addr,
		Logger:         opts.Logger,
		Durable:        firstNonEmpty(group, durable, opts.ConsumerGroup),
		AckWait:        p.Duration("ack_wait", 30*time.Second, time.Second),
		MaxAckPending:  p.Int("max_ack_pending", 1, 1, 1<<20),
		MaxDeliver:     p.Int("max_deliver", -1, -1, 1<<30),
		PublishTimeout: p.Duration("publish_timeout", 10*time.Second, time.Millisecond),
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	if !ensure {
		// Stream settings only apply when this call creates the stream.
		for name, set := range map[string]bool{"subjects": subjects != "", "duplicates": u.Query().Has("duplicates"), "storage": u.Query().Has("storage")} {
			if set {
				return nil, &outboxbroker.ParamError{Param: name, Reason: "only applies with ensure_stream=true"}
			}
		}
	}
	if ensure {
		if stream == "" {
			return nil, &outboxbroker.ParamError{Param: "ensure_stream", Reason: "needs the stream parameter"}
		}
		sc := StreamConfig{Name: stream, DuplicateWindow: dup, MemoryStorage: storage == "memory"}
		if subjects != "" {
			sc.Subjects = strings.Split(subjects, ",")
		}
		cfg.EnsureStream = &sc
	}
	cfg.URL = outboxbroker.BaseURL(u)
	if stream != "" && !ensure {
		// Check the named stream exists now, rather than failing every publish.
		if err := checkStream(ctx, cfg, stream); err != nil {
			return nil, err
		}
	}

	return outboxbroker.NewBroker(Features,
		func() (message.Publisher, error) { return NewPublisher(cfg) },
		func() (message.Subscriber, error) { return NewSubscriber(cfg) })
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// checkStream fails when the JetStream stream does not exist.
func checkStream(ctx context.Context, cfg Config, stream string) error {
	nc, err := cfg.withDefaults().connect("outbox-stream-check")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	if _, err := js.StreamInfo(stream, nats.Context(ctx)); err != nil {
		return &outboxbroker.ParamError{Param: "stream", Reason: fmt.Sprintf("stream %q is not usable (%v); create it or set ensure_stream=true", stream, err)}
	}
	return nil
}
