// Package kafka connects outboxkit to Apache Kafka through
// watermill-kafka/v3 and IBM/sarama, with durable defaults:
//
//   - RequiredAcks = WaitForAll: a publish returns once every in-sync
//     replica has the record (sarama's default is WaitForLocal);
//   - an idempotent producer (Producer.Idempotent, Net.MaxOpenRequests = 1):
//     the broker drops the producer's own retries, so a retry cannot write a
//     record twice or reorder a key (DisableIdempotence turns it off for
//     brokers or ACLs that refuse InitProducerID);
//   - the event key (metadata outbox_key) is the Kafka record key, so one
//     key's events land on one partition in publish order;
//   - the event id travels in the headers outbox_event_id and
//     _watermill_message_uuid, the type in outbox_event_type, with every
//     other event header;
//   - subscribers join a consumer group and start from the oldest offset
//     when the group has none;
//   - PublishAsync (outbox.AsyncPublisher) sends through a sarama async
//     producer with the same settings: sarama batches what is queued while
//     a request is in flight, and the idempotent producer keeps each
//     partition's order.
//
// Kafka has no broker-side dedup by event id: the idempotent producer only
// removes duplicates of one producer session's retries. A relay that crashed
// and republished leaves a second record with the same outbox_event_id;
// consumers deduplicate (package inbox).
//
// Importing the package registers the "kafka" URL scheme with
// framework/outboxbroker.
package kafka

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// DefaultConsumerGroup is the consumer group Config.ConsumerGroup defaults to.
const DefaultConsumerGroup = "outbox"

// DefaultVersion is the Kafka protocol version Config.Version defaults to:
// record headers need at least 0.11, the idempotent producer 0.11.
var DefaultVersion = sarama.V2_1_0_0

// SASL holds SASL credentials. A zero Mechanism means no SASL.
type SASL struct {
	// Mechanism is sarama.SASLTypePlaintext ("PLAIN"),
	// sarama.SASLTypeSCRAMSHA256 or sarama.SASLTypeSCRAMSHA512; the SCRAM ones
	// also need Config.Sarama to set Net.SASL.SCRAMClientGeneratorFunc.
	Mechanism string
	// User is the SASL user name.
	User string
	// Password is the SASL password; it is never logged.
	Password string
}

// Config configures publishers and subscribers. Brokers is required.
type Config struct {
	// Brokers are the bootstrap broker addresses (host:port). Required. A
	// test may point them at a loopback proxy; note that Kafka clients then
	// connect to the addresses the cluster advertises in its metadata, so a
	// proxy must also be what the cluster advertises.
	Brokers []string

	// ClientID is sent to the brokers. Zero means "outboxkit".
	ClientID string

	// Version is the Kafka protocol version sarama speaks. Zero means
	// DefaultVersion.
	Version sarama.KafkaVersion

	// DisableIdempotence turns the idempotent producer off. Zero (false)
	// means idempotent, which needs Kafka >= 0.11 and, with ACLs, the
	// IdempotentWrite permission.
	DisableIdempotence bool

	// TLS, when set, enables TLS with this configuration.
	TLS *tls.Config

	// SASL, when its Mechanism is set, enables SASL authentication.
	SASL SASL

	// ConsumerGroup is the group subscribers join. Zero means
	// DefaultConsumerGroup.
	ConsumerGroup string

	// FromNewest makes a consumer group without committed offsets start at
	// the end of the partitions. Zero (false) means from the oldest record,
	// so that a new group misses nothing already published.
	FromNewest bool

	// TopicDetail, when set, lets the subscriber's SubscribeInitialize
	// create a missing topic with these partitions, replication factor and
	// configs (Watermill's Router and test suites call it before they
	// subscribe). Nil means SubscribeInitialize fails: the topics must be
	// created by whoever operates the cluster.
	TopicDetail *sarama.TopicDetail

	// Sarama, when set, is called last on every sarama.Config this package
	// builds, to set anything else. It can undo the durable defaults: leave
	// Producer.RequiredAcks alone.
	Sarama func(*sarama.Config)

	// Logger receives watermill-kafka logs. Nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	c.ClientID = cmp.Or(c.ClientID, "outboxkit")
	if c.Version == (sarama.KafkaVersion{}) {
		c.Version = DefaultVersion
	}
	c.ConsumerGroup = cmp.Or(c.ConsumerGroup, DefaultConsumerGroup)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: invalid config: Brokers is empty")
	}
	for _, b := range c.Brokers {
		if b == "" || !strings.Contains(b, ":") {
			return fmt.Errorf("kafka: invalid config: Brokers entry %q is not host:port", b)
		}
	}
	if !c.Version.IsAtLeast(sarama.V0_11_0_0) {
		return fmt.Errorf("kafka: invalid config: Version %s is below 0.11.0.0 (no record headers)", c.Version)
	}
	switch c.SASL.Mechanism {
	case "", sarama.SASLTypePlaintext, sarama.SASLTypeSCRAMSHA256, sarama.SASLTypeSCRAMSHA512:
	default:
		return fmt.Errorf("kafka: invalid config: SASL.Mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASL.Mechanism)
	}
	return nil
}

func (c Config) base() *sarama.Config {
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	sc.Version = c.Version
	if c.TLS != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = c.TLS
	}
	if c.SASL.Mechanism != "" {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Mechanism = sarama.SASLMechanism(c.SASL.Mechanism)
		sc.Net.SASL.User = c.SASL.User
		sc.Net.SASL.Password = c.SASL.Password
		sc.Net.SASL.Handshake = true
	}
	return sc
}

// SaramaProducerConfig returns the sarama configuration publishers use
// (defaults applied). Tests and operators use it to check the durable
// settings.
func (c Config) SaramaProducerConfig() *sarama.Config {
	c = c.withDefaults()
	sc := c.base()
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 250 * time.Millisecond
	sc.Metadata.Retry.Backoff = 500 * time.Millisecond
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	if !c.DisableIdempotence {
		sc.Producer.Idempotent = true
		// sarama requires exactly one in-flight request per broker for an
		// idempotent producer (it rejects the config otherwise).
		sc.Net.MaxOpenRequests = 1
	}
	if c.Sarama != nil {
		c.Sarama(sc)
	}
	return sc
}

// SaramaConsumerConfig returns the sarama configuration subscribers use
// (defaults applied).
func (c Config) SaramaConsumerConfig() *sarama.Config {
	c = c.withDefaults()
	sc := c.base()
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	if c.FromNewest {
		sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	if c.Sarama != nil {
		c.Sarama(sc)
	}
	return sc
}

// PublisherConfig returns the watermill-kafka publisher configuration
// NewPublisher uses.
func (c Config) PublisherConfig() wmkafka.PublisherConfig {
	return wmkafka.PublisherConfig{
		Brokers:               c.Brokers,
		Marshaler:             Marshaler{},
		OverwriteSaramaConfig: c.SaramaProducerConfig(),
	}
}

// SubscriberConfig returns the watermill-kafka subscriber configuration
// NewSubscriber uses.
func (c Config) SubscriberConfig() wmkafka.SubscriberConfig {
	d := c.withDefaults()
	return wmkafka.SubscriberConfig{
		Brokers:                c.Brokers,
		Unmarshaler:            Marshaler{},
		OverwriteSaramaConfig:  c.SaramaConsumerConfig(),
		ConsumerGroup:          d.ConsumerGroup,
		InitializeTopicDetails: c.TopicDetail,
		NackResendSleep:        100 * time.Millisecond,
		ReconnectRetrySleep:    time.Second,
	}
}

// Marshaler is watermill-kafka's partitioning marshaler keyed by the event
// key: metadata outbox_key becomes the record key (no key, a nil record key,
// when the event has none), and the message UUID and all metadata become
// record headers.
type Marshaler struct{}

var partitioning = wmkafka.NewWithPartitioningMarshaler(func(_ string, msg *message.Message) (string, error) {
	return msg.Metadata.Get(outbox.MetadataKey), nil
})

// Marshal implements watermill-kafka's Marshaler.
func (Marshaler) Marshal(topic string, msg *message.Message) (*sarama.ProducerMessage, error) {
	pm, err := partitioning.Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	if msg.Metadata.Get(outbox.MetadataKey) == "" {
		// An empty (non-nil) key would hash every keyless event to one
		// partition; nil spreads them.
		pm.Key = nil
	}
	// Map iteration order made the header order random; sort for stable
	// bytes on the wire.
	slices.SortStableFunc(pm.Headers[1:], func(a, b sarama.RecordHeader) int {
		return strings.Compare(string(a.Key), string(b.Key))
	})
	return pm, nil
}

// Unmarshal implements watermill-kafka's Unmarshaler.
func (Marshaler) Unmarshal(cm *sarama.ConsumerMessage) (*message.Message, error) {
	return partitioning.Unmarshal(cm)
}

// NewPublisher returns a publisher: Publish returns once every message was
// acknowledged by all in-sync replicas, in order; PublishAsync (an
// outbox.AsyncPublisher) pipelines publishes through a sarama async
// producer with the same settings.
func NewPublisher(cfg Config) (*Publisher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pub, err := wmkafka.NewPublisher(cfg.PublisherConfig(), watermill.NewSlogLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("kafka: new publisher: %w", err)
	}
	return &Publisher{cfg: cfg, pub: pub, inFlight: make(chan struct{}, asyncMaxInFlight)}, nil
}

// NewSubscriber returns a consumer-group subscriber. Offsets are committed
// after the handler acks a message (at-least-once).
func NewSubscriber(cfg Config) (*wmkafka.Subscriber, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sub, err := wmkafka.NewSubscriber(cfg.SubscriberConfig(), watermill.NewSlogLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("kafka: new subscriber: %w", err)
	}
	return sub, nil
}
