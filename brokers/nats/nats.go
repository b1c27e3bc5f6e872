// Package nats connects outboxkit to NATS JetStream through
// watermill-nats/v2, with durable defaults:
//
//   - every publish waits for the stream's acknowledgement (PubAck);
//   - the message UUID (the outbox event id) is sent as Nats-Msg-Id, so the
//     stream drops a republished event inside its duplicate window; a
//     resend the receiver must get (metadata outbox_resend, set for events
//     awaiting a business acknowledgment) is sent as the event id plus
//     "/resend-N" (outboxbroker.DedupID), so the stream stores it;
//   - subscribers use a durable, explicitly acknowledged consumer that this
//     package creates itself, so closing a subscriber never deletes it;
//   - streams are never created on the publish path: call EnsureStream (or
//     set Config.EnsureStream / the URL's ensure_stream=true) once at start.
//
// A topic is used as the NATS subject unchanged. NATS subjects are
// dot-separated tokens: a topic must be non-empty, contain no whitespace,
// no wildcard ('*' or '>') and no empty token (leading, trailing or doubled
// dot); ValidateSubject checks this and Publish/Subscribe reject other
// topics with an error.
//
// Importing the package registers the "nats" URL scheme with
// framework/outboxbroker.
package nats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/outboxkit/outboxkit/framework/outboxbroker"
)

// DefaultURL is the NATS server Config.URL defaults to.
const DefaultURL = "nats://127.0.0.1:4222"

// DefaultDurable is the consumer durable name prefix Config.Durable defaults to.
const DefaultDurable = "outbox"

// Config configures publishers and subscribers. The zero value connects to
// DefaultURL with durable defaults.
type Config struct {
	// URL is the NATS server URL, credentials included (nats://user:pass@host
	// or nats://token@host). Zero means DefaultURL.
	URL string

	// Addr, when set, replaces the URL's host:port (e.g. a loopback proxy in
	// fault tests). Zero means use the URL's.
	Addr string

	// Options are extra nats.go connection options (TLS, credentials file,
	// reconnect settings). They are applied after this package's defaults
	// (unlimited reconnects, a client name).
	Options []nats.Option

	// PublishTimeout bounds how long one publish waits for the stream's
	// acknowledgement. Zero means 10s.
	PublishTimeout time.Duration

	// Durable is the prefix of the durable consumer names subscribers
	// create: the consumer for topic T is Durable + "_" + T with dots and
	// other characters invalid in consumer names replaced by '_'. All
	// subscribers with the same Durable share that consumer's messages (a
	// deliver/queue group). Zero means DefaultDurable.
	Durable string

	// AckWait is how long the server waits for a subscriber's ack before
	// redelivering a message. Zero means 30s.
	AckWait time.Duration

	// MaxDeliver caps deliveries of one message to a durable consumer. Zero
	// means unlimited (-1), the server default.
	MaxDeliver int

	// MaxAckPending is how many messages a durable consumer hands out
	// before the oldest is acknowledged. Zero means 1, which keeps stream
	// order also across redeliveries (a nacked message is redelivered before
	// any later one); raise it for throughput when order does not matter.
	MaxAckPending int

	// EnsureStream, when set, makes NewPublisher and NewSubscriber call
	// EnsureStream with it once at construction. Nil means the stream must
	// already exist (publishes then fail with "no responders").
	EnsureStream *StreamConfig

	// Logger receives watermill-nats logs. Nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	c.URL = cmp.Or(c.URL, DefaultURL)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, 10*time.Second)
	c.Durable = cmp.Or(c.Durable, DefaultDurable)
	c.AckWait = cmp.Or(c.AckWait, 30*time.Second)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, 1)
	if c.MaxDeliver == 0 {
		c.MaxDeliver = -1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return errors.New("nats: invalid config: URL is not a nats://host:port URL")
	}
	switch {
	case c.PublishTimeout < 0:
		return fmt.Errorf("nats: invalid config: PublishTimeout %s must not be negative", c.PublishTimeout)
	case c.AckWait < time.Second:
		return fmt.Errorf("nats: invalid config: AckWait %s must be at least 1s", c.AckWait)
	case c.MaxAckPending < 1:
		return fmt.Errorf("nats: invalid config: MaxAckPending %d must be positive", c.MaxAckPending)
	case c.MaxDeliver < -1:
		return fmt.Errorf("nats: invalid config: MaxDeliver %d must be -1 or positive", c.MaxDeliver)
	case ConsumerName(c.Durable, "x") == "" || strings.ContainsAny(c.Durable, ".*> \t/\\"):
		return fmt.Errorf("nats: invalid config: Durable %q must be a plain name (no '.', '*', '>', '/', whitespace)", c.Durable)
	}
	if c.EnsureStream != nil {
		if err := c.EnsureStream.validate(); err != nil {
			return err
		}
	}
	return nil
}

// connectURL applies Addr to URL, keeping credentials and scheme.
func (c Config) connectURL() string {
	if c.Addr == "" {
		return c.URL
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return c.URL
	}
	u.Host = c.Addr
	return u.String()
}

// open validates c (defaults applied), connects, and provisions
// c.EnsureStream when set: what the publisher and the subscriber both do
// first.
func (c Config) open(name string) (*nats.Conn, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	nc, err := c.connect(name)
	if err != nil {
		return nil, err
	}
	if c.EnsureStream != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.PublishTimeout)
		err := ensureStream(ctx, nc, *c.EnsureStream)
		cancel()
		if err != nil {
			nc.Close()
			return nil, err
		}
	}
	return nc, nil
}

func (c Config) connect(name string) (*nats.Conn, error) {
	opts := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}, c.Options...)
	nc, err := nats.Connect(c.connectURL(), opts...)
	if err != nil {
		// nats errors do not echo the URL; keep it that way.
		return nil, fmt.Errorf("nats: connect: %w", err)
	}
	return nc, nil
}

// PublisherConfig returns the watermill-nats publisher configuration this
// package builds from c (defaults applied), without connecting. Tests and
// operators use it to check the durable settings.
func (c Config) PublisherConfig() wmnats.PublisherConfig {
	c = c.withDefaults()
	return wmnats.PublisherConfig{
		URL:               c.connectURL(),
		Marshaler:         &DedupMarshaler{},
		SubjectCalculator: subjectCalculator,
		JetStream: wmnats.JetStreamConfig{
			// AutoProvision would do a StreamInfo round trip before every
			// Publish; streams are provisioned once by EnsureStream.
			AutoProvision: false,
			// The marshaler sets Nats-Msg-Id; TrackMsgId would replace it
			// with the message UUID, so that a resend would be dropped.
			TrackMsgId:     false,
			ConnectOptions: []nats.JSOpt{nats.MaxWait(c.PublishTimeout)},
		},
	}
}

// SubscriberConfig returns the watermill-nats subscriber configuration this
// package builds from c (defaults applied), without connecting.
func (c Config) SubscriberConfig() wmnats.SubscriberConfig {
	c = c.withDefaults()
	return wmnats.SubscriberConfig{
		URL:               c.connectURL(),
		QueueGroupPrefix:  c.Durable,
		SubscribersCount:  1,
		AckWaitTimeout:    c.AckWait,
		CloseTimeout:      30 * time.Second,
		Unmarshaler:       &wmnats.NATSMarshaler{},
		SubjectCalculator: subjectCalculator,
		JetStream: wmnats.JetStreamConfig{
			AutoProvision: false,
			// ManualAck: without it nats.go acks every message once the
			// callback returns, including the ones Watermill gave up on (ack
			// timeout, closing), which would silently drop them.
			SubscribeOptions: []nats.SubOpt{nats.ManualAck(), nats.AckExplicit()},
			AckAsync:         false,
			DurablePrefix:    c.Durable,
			DurableCalculator: func(prefix, topic string) string {
				return ConsumerName(prefix, topic)
			},
		},
	}
}

// subjectCalculator maps a topic to itself as subject; the queue (deliver)
// group equals the durable consumer name, as nats.go requires for a durable
// queue consumer.
func subjectCalculator(durable, topic string) *wmnats.SubjectDetail {
	return &wmnats.SubjectDetail{Primary: topic, QueueGroup: ConsumerName(durable, topic)}
}

// ConsumerName returns the durable consumer name for a topic: prefix + "_" +
// topic, with every character other than ASCII letters, digits, '-' and '_'
// replaced by '_'.
func ConsumerName(prefix, topic string) string {
	return sanitizeName(prefix + "_" + topic)
}

func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_') {
			return r
		}
		return '_'
	}, s)
}

// ErrInvalidSubject is returned (wrapped) for a topic that is not a valid
// concrete NATS subject.
var ErrInvalidSubject = errors.New("nats: invalid subject")

// ValidateSubject reports whether topic can be published to as a NATS
// subject: non-empty, no whitespace or control characters, no wildcard token
// ('*', '>'), and no empty token.
func ValidateSubject(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: topic is empty", ErrInvalidSubject)
	}
	for _, r := range topic {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w %q: whitespace or control character", ErrInvalidSubject, topic)
		}
	}
	for _, tok := range strings.Split(topic, ".") {
		switch {
		case tok == "":
			return fmt.Errorf("%w %q: empty token (leading, trailing or doubled '.')", ErrInvalidSubject, topic)
		case strings.ContainsAny(tok, "*>"):
			return fmt.Errorf("%w %q: wildcards '*' and '>' are not allowed in a published subject", ErrInvalidSubject, topic)
		}
	}
	return nil
}

// DedupMarshaler is watermill-nats' NATSMarshaler (metadata as headers,
// the UUID in header _watermill_message_uuid) that also sets Nats-Msg-Id
// to outboxbroker.DedupID(msg): the event id, or the event id plus
// "/resend-N" for a resend its receiver must get. Nats-Msg-Id in the
// message's own metadata is replaced. PublisherConfig uses it.
type DedupMarshaler struct{ wmnats.NATSMarshaler }

// Marshal implements wmnats.Marshaler.
func (m *DedupMarshaler) Marshal(topic string, msg *message.Message) (*nats.Msg, error) {
	nm, err := m.NATSMarshaler.Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	nm.Header.Set(nats.MsgIdHdr, outboxbroker.DedupID(msg))
	return nm, nil
}

// Publisher is a message.Publisher over JetStream: Publish returns once the
// stream acknowledged every message (in order), and fails on the first
// message that was not acknowledged.
type Publisher struct {
	pub       *wmnats.Publisher
	js        nats.JetStreamContext // PublishAsync
	marshaler wmnats.Marshaler
}

// NewPublisher connects to NATS and returns a Publisher.
func NewPublisher(cfg Config) (*Publisher, error) {
	cfg = cfg.withDefaults()
	nc, err := cfg.open("outboxkit-publisher")
	if err != nil {
		return nil, err
	}
	pc := cfg.PublisherConfig()
	pub, err := wmnats.NewPublisherWithNatsConn(nc, pc.GetPublisherPublishConfig(), watermill.NewSlogLogger(cfg.Logger))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: new publisher: %w", err)
	}
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(asyncMaxPending))
	if err != nil {
		_ = pub.Close()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	return &Publisher{pub: pub, js: js, marshaler: pc.Marshaler}, nil
}

// asyncMaxPending bounds PublishAsync's unacknowledged publishes; beyond it
// PublishAsync waits for room (the relay never has more than a few batches
// in flight).
const asyncMaxPending = 4096

// PublishAsync implements outbox.AsyncPublisher: it sends msg to the stream
// as Publish does (same subject, headers and Nats-Msg-Id) without waiting
// for the stream's acknowledgement; wait returns it. Several publishes share
// one reply subscription instead of one request each.
func (p *Publisher) PublishAsync(topic string, msg *message.Message) (wait func(context.Context) error, err error) {
	if err := ValidateSubject(topic); err != nil {
		return nil, err
	}
	nm, err := p.marshaler.Marshal(topic, msg)
	if err != nil {
		return nil, fmt.Errorf("nats: publish to %q: %w", topic, err)
	}
	f, err := p.js.PublishMsgAsync(nm, nats.MsgId(outboxbroker.DedupID(msg)))
	if err != nil {
		return nil, fmt.Errorf("nats: publish to %q: %w", topic, err)
	}
	return func(ctx context.Context) error {
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return fmt.Errorf("nats: publish to %q: %w", topic, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// Publish implements message.Publisher.
func (p *Publisher) Publish(topic string, messages ...*message.Message) error {
	if err := ValidateSubject(topic); err != nil {
		return err
	}
	if err := p.pub.Publish(topic, messages...); err != nil {
		return fmt.Errorf("nats: publish to %q: %w", topic, err)
	}
	return nil
}

// Close implements message.Publisher; it closes the connection.
func (p *Publisher) Close() error { return p.pub.Close() }

// Subscriber is a message.Subscriber over a durable JetStream consumer per
// topic. Messages of one topic are delivered one at a time, in stream order,
// to one subscriber of the consumer group; a message that is nacked or not
// acked within AckWait is redelivered.
type Subscriber struct {
	cfg Config
	nc  *nats.Conn
	js  nats.JetStreamContext
	sub *wmnats.Subscriber
}

// NewSubscriber connects to NATS and returns a Subscriber.
func NewSubscriber(cfg Config) (*Subscriber, error) {
	cfg = cfg.withDefaults()
	nc, err := cfg.open("outboxkit-subscriber")
	if err != nil {
		return nil, err
	}
	js, err := nc.JetStream(nats.MaxWait(cfg.PublishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	sc := cfg.SubscriberConfig()
	sub, err := wmnats.NewSubscriberWithNatsConn(nc, sc.GetSubscriberSubscriptionConfig(), watermill.NewSlogLogger(cfg.Logger))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: new subscriber: %w", err)
	}
	return &Subscriber{cfg: cfg, nc: nc, js: js, sub: sub}, nil
}

// Subscribe implements message.Subscriber. It first creates the topic's
// durable consumer when missing: a consumer nats.go creates on subscribe is
// deleted again when the subscription ends, losing its position.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := ValidateSubject(topic); err != nil {
		return nil, err
	}
	if err := s.ensureConsumer(ctx, topic); err != nil {
		return nil, err
	}
	ch, err := s.sub.Subscribe(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("nats: subscribe to %q: %w", topic, err)
	}
	return ch, nil
}

func (s *Subscriber) ensureConsumer(ctx context.Context, topic string) error {
	stream, err := s.js.StreamNameBySubject(topic, nats.Context(ctx))
	if err != nil {
		return fmt.Errorf("nats: no stream stores subject %q (call EnsureStream first): %w", topic, err)
	}
	name := ConsumerName(s.cfg.Durable, topic)
	_, err = s.js.ConsumerInfo(stream, name, nats.Context(ctx))
	if err == nil {
		return nil
	}
	if !errors.Is(err, nats.ErrConsumerNotFound) {
		return fmt.Errorf("nats: consumer %q info: %w", name, err)
	}
	_, err = s.js.AddConsumer(stream, &nats.ConsumerConfig{
		Durable:        name,
		DeliverSubject: nats.NewInbox(),
		DeliverGroup:   name,
		DeliverPolicy:  nats.DeliverAllPolicy,
		AckPolicy:      nats.AckExplicitPolicy,
		AckWait:        s.cfg.AckWait,
		MaxDeliver:     s.cfg.MaxDeliver,
		FilterSubject:  topic,
		MaxAckPending:  s.cfg.MaxAckPending,
	}, nats.Context(ctx))
	if err != nil && !errors.Is(err, nats.ErrConsumerNameAlreadyInUse) {
		return fmt.Errorf("nats: create durable consumer %q on stream %q: %w", name, stream, err)
	}
	return nil
}

// Close implements message.Subscriber: it stops the subscriptions, waits for
// in-flight messages (up to 30s) and drains the connection. The durable
// consumers stay on the server.
func (s *Subscriber) Close() error { return s.sub.Close() }
