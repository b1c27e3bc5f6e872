// Package redisstream connects outboxkit to Redis Streams through
// watermill-redisstream:
//
//   - Publish is one XADD per message, returning once Redis answered; an
//     optional approximate MAXLEN (Config.MaxLen) trims the stream;
//     PublishAsync (outbox.AsyncPublisher) pipelines the same XADDs;
//   - the event id is the entry field _watermill_message_uuid, and the
//     fields outbox_event_id, outbox_event_type and outbox_key are added as
//     plain strings for non-Watermill readers; the payload is the field
//     payload and all metadata is msgpack in the field metadata;
//   - subscribers join a consumer group (XREADGROUP) that starts from the
//     first entry, acknowledge with XACK, and claim entries left pending by
//     dead consumers.
//
// Redis does not deduplicate by event id, and trimming (MaxLen) deletes
// entries whether consumed or not: set it above the worst consumer lag.
// Durability depends on the server's persistence (AOF/RDB); a server without
// it loses the stream on restart.
//
// Importing the package registers the "redis" and "rediss" URL schemes with
// framework/outboxbroker.
package redisstream

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// DefaultURL is the server Config.URL defaults to.
const DefaultURL = "redis://127.0.0.1:6379/0"

// DefaultConsumerGroup is the consumer group Config.ConsumerGroup defaults to.
const DefaultConsumerGroup = "outbox"

// Config configures publishers and subscribers. The zero value uses
// DefaultURL.
type Config struct {
	// URL is the Redis URL (redis:// or rediss://, password and database
	// included). Zero means DefaultURL.
	URL string

	// Addr, when set, replaces the URL's host:port (e.g. a loopback proxy).
	Addr string

	// MaxLen, when positive, trims each stream to about this many entries on
	// XADD (MAXLEN ~). Zero means never trim. Trimming drops unconsumed
	// entries too.
	MaxLen int64

	// ConsumerGroup is the group subscribers join. Zero means
	// DefaultConsumerGroup.
	ConsumerGroup string

	// Consumer names this subscriber inside the group. Zero means a random
	// name per Subscriber.
	Consumer string

	// MaxIdleTime is how long an entry read by a consumer of the group may
	// stay unacknowledged before another consumer of the group claims it
	// (a consumer that stopped without acknowledging leaves its entries
	// pending). Zero means watermill-redisstream's default, 60s.
	MaxIdleTime time.Duration

	// ClaimInterval is how often a subscriber looks for entries idle longer
	// than MaxIdleTime. Zero means watermill-redisstream's default, 5s.
	ClaimInterval time.Duration

	// Logger receives watermill-redisstream logs. Nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	c.URL = cmp.Or(c.URL, DefaultURL)
	c.ConsumerGroup = cmp.Or(c.ConsumerGroup, DefaultConsumerGroup)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// client builds the go-redis client; errors never contain the URL.
func (c Config) client() (*redis.Client, error) {
	if c.MaxLen < 0 {
		return nil, fmt.Errorf("redisstream: invalid config: MaxLen %d must not be negative", c.MaxLen)
	}
	opts, err := redis.ParseURL(c.URL)
	if err != nil {
		return nil, errors.New("redisstream: invalid config: URL is not a redis:// or rediss:// URL")
	}
	if c.Addr != "" {
		opts.Addr = c.Addr
	}
	return redis.NewClient(opts), nil
}

// Marshaller is watermill-redisstream's default marshaller plus the plain
// fields outbox_event_id, outbox_event_type and outbox_key.
type Marshaller struct {
	wmredis.DefaultMarshallerUnmarshaller
}

// Marshal implements wmredis.Marshaller.
func (m Marshaller) Marshal(topic string, msg *message.Message) (map[string]any, error) {
	v, err := m.DefaultMarshallerUnmarshaller.Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	v[outbox.MetadataEventID] = msg.UUID
	for _, k := range []string{outbox.MetadataEventType, outbox.MetadataKey} {
		if s := msg.Metadata.Get(k); s != "" {
			v[k] = s
		}
	}
	return v, nil
}

// PublisherConfig returns the watermill-redisstream publisher configuration
// for a client.
func (c Config) PublisherConfig(client redis.UniversalClient) wmredis.PublisherConfig {
	return wmredis.PublisherConfig{Client: client, Marshaller: Marshaller{}, DefaultMaxlen: c.MaxLen}
}

// SubscriberConfig returns the watermill-redisstream subscriber
// configuration for a client (defaults applied).
func (c Config) SubscriberConfig(client redis.UniversalClient) wmredis.SubscriberConfig {
	c = c.withDefaults()
	return wmredis.SubscriberConfig{
		Client:        client,
		Unmarshaller:  Marshaller{},
		ConsumerGroup: c.ConsumerGroup,
		Consumer:      c.Consumer,
		OldestId:      "0",
		MaxIdleTime:   c.MaxIdleTime,
		ClaimInterval: c.ClaimInterval,
	}
}

// NewPublisher returns a publisher; it owns (and closes) its client.
func NewPublisher(cfg Config) (*Publisher, error) {
	cfg = cfg.withDefaults()
	cl, err := cfg.client()
	if err != nil {
		return nil, err
	}
	pub, err := wmredis.NewPublisher(cfg.PublisherConfig(cl), watermill.NewSlogLogger(cfg.Logger))
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("redisstream: new publisher: %w", err)
	}
	p := &Publisher{pub: pub, client: cl, maxLen: cfg.MaxLen, queue: make(chan *xadd, asyncMaxInFlight), done: make(chan struct{})}
	go p.pipeline()
	return p, nil
}

// NewSubscriber returns a consumer-group subscriber; it owns (and closes)
// its client.
func NewSubscriber(cfg Config) (*wmredis.Subscriber, error) {
	cfg = cfg.withDefaults()
	cl, err := cfg.client()
	if err != nil {
		return nil, err
	}
	sub, err := wmredis.NewSubscriber(cfg.SubscriberConfig(cl), watermill.NewSlogLogger(cfg.Logger))
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("redisstream: new subscriber: %w", err)
	}
	return sub, nil
}
