// Package amqp connects outboxkit to RabbitMQ (AMQP 0-9-1) through
// watermill-amqp/v3, with durable defaults and no silent loss:
//
//   - one durable topic exchange (Config.Exchange); the Watermill topic is
//     the routing key;
//   - every publish is persistent (delivery mode 2), carries the event id as
//     the AMQP message-id property (and watermill's _watermill_message_uuid
//     header), is published with mandatory=true and waits for the broker's
//     publisher confirm;
//   - a message the broker returns as unroutable fails the publish with
//     ErrUnroutable, although RabbitMQ still confirms it;
//   - by default the publisher declares and binds the topic's durable queue
//     (QueueName(ConsumerGroup, topic)) before its first publish to a topic,
//     so events published before any consumer started are kept;
//   - subscribers consume that durable queue with prefetch 1 and manual acks.
//
// Why not watermill-amqp's Publisher: it never listens for basic.return, so
// with Mandatory=true an unroutable message is dropped by RabbitMQ and still
// confirmed (ack=true), and Publish returns nil: silent loss. This package's
// Publisher reuses watermill-amqp's connection (with reconnects) and
// marshaler, and publishes on channels it watches for returns.
//
// Importing the package registers the "amqp" and "amqps" URL schemes with
// framework/outboxbroker.
package amqp

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// DefaultURL is the broker Config.URL defaults to.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// DefaultExchange is the exchange Config.Exchange defaults to.
const DefaultExchange = "outbox"

// DefaultConsumerGroup is the queue name prefix Config.ConsumerGroup
// defaults to.
const DefaultConsumerGroup = "outbox"

// ErrUnroutable is returned (wrapped) by Publish when the broker returned a
// message because no queue is bound for its routing key.
var ErrUnroutable = errors.New("amqp: message unroutable (no queue bound for the routing key)")

// ErrNacked is returned (wrapped) by Publish when the broker negatively
// confirmed a message (it could not store it).
var ErrNacked = errors.New("amqp: broker nacked the message")

// Config configures publishers and subscribers. The zero value uses
// DefaultURL and durable defaults.
type Config struct {
	// URL is the AMQP URL (amqp:// or amqps://, credentials and vhost
	// included). Zero means DefaultURL.
	URL string

	// Addr, when set, replaces the URL's host:port (e.g. a loopback proxy in
	// fault tests).
	Addr string

	// TLS, when set, is used for amqps:// connections.
	TLS *tls.Config

	// Exchange is the durable topic exchange publishers publish to. Zero
	// means DefaultExchange.
	Exchange string

	// ConsumerGroup names the durable queues: the queue of topic T is
	// QueueName(ConsumerGroup, T). All subscribers with the same
	// ConsumerGroup share that queue's messages. Zero means
	// DefaultConsumerGroup.
	ConsumerGroup string

	// SkipQueueDeclare stops the publisher from declaring and binding the
	// topic's queue. Zero (false) means it declares it once per topic. Set it
	// when consumers own their bindings; an unroutable message then fails the
	// publish with ErrUnroutable instead of vanishing.
	SkipQueueDeclare bool

	// PublishTimeout bounds the wait for one message's publisher confirm.
	// Zero means 15s.
	PublishTimeout time.Duration

	// Logger receives watermill-amqp logs. Nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	c.URL = cmp.Or(c.URL, DefaultURL)
	c.Exchange = cmp.Or(c.Exchange, DefaultExchange)
	c.ConsumerGroup = cmp.Or(c.ConsumerGroup, DefaultConsumerGroup)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, 15*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
		return errors.New("amqp: invalid config: URL is not an amqp:// or amqps:// URL with a host")
	}
	if len(c.Exchange) > 255 {
		return errors.New("amqp: invalid config: Exchange longer than 255 bytes")
	}
	if c.PublishTimeout < 0 {
		return fmt.Errorf("amqp: invalid config: PublishTimeout %s must not be negative", c.PublishTimeout)
	}
	return nil
}

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

// QueueName returns the durable queue of a topic for a consumer group:
// group + "." + topic.
func QueueName(group, topic string) string { return group + "." + topic }

func validateTopic(topic string) error {
	if topic == "" || len(topic) > 255 {
		return fmt.Errorf("amqp: invalid topic %q: a routing key is 1..255 bytes", topic)
	}
	return nil
}

// WatermillConfig returns the watermill-amqp configuration this package
// builds (defaults applied): durable topic exchange, durable queues,
// persistent delivery, publisher confirms and mandatory publishing.
// Subscribers use it as is; publishers use its connection, marshaler and
// topology settings.
func (c Config) WatermillConfig() wmamqp.Config {
	c = c.withDefaults()
	return wmamqp.Config{
		Connection: wmamqp.ConnectionConfig{
			AmqpURI:   c.connectURL(),
			TLSConfig: c.TLS,
			Reconnect: wmamqp.DefaultReconnectConfig(),
		},
		Marshaler: wmamqp.DefaultMarshaler{
			PostprocessPublishing: func(p amqp.Publishing) amqp.Publishing {
				// The AMQP message-id property is the broker-native dedup
				// slot; the event id is also the Watermill UUID header.
				if id, ok := p.Headers[wmamqp.DefaultMessageUUIDHeaderKey].(string); ok {
					p.MessageId = id
				}
				if t, ok := p.Headers[outbox.MetadataEventType].(string); ok {
					p.Type = t
				}
				return p
			},
		},
		Exchange: wmamqp.ExchangeConfig{
			GenerateName: wmamqp.GenerateExchangeNameConstant(c.Exchange),
			Type:         "topic",
			Durable:      true,
		},
		Queue: wmamqp.QueueConfig{
			GenerateName: func(topic string) string { return QueueName(c.ConsumerGroup, topic) },
			Durable:      true,
		},
		QueueBind: wmamqp.QueueBindConfig{
			GenerateRoutingKey: func(topic string) string { return topic },
		},
		Publish: wmamqp.PublishConfig{
			GenerateRoutingKey: func(topic string) string { return topic },
			Mandatory:          true,
			ConfirmDelivery:    true,
		},
		Consume: wmamqp.ConsumeConfig{
			Qos: wmamqp.QosConfig{PrefetchCount: 1},
		},
		TopologyBuilder: &wmamqp.DefaultTopologyBuilder{},
	}
}

// Publisher is a message.Publisher that waits for the publisher confirm of
// every message and fails on returned (unroutable) and nacked messages.
// It is safe for concurrent use; concurrent Publish calls use separate
// channels. It is also an outbox.AsyncPublisher: PublishAsync pipelines
// publishes on one confirm-mode channel.
type Publisher struct {
	cfg  Config
	wcfg wmamqp.Config
	conn *wmamqp.ConnectionWrapper
	log  watermill.LoggerAdapter

	pool     chan *pubChannel
	declared sync.Map // topic -> struct{}
	declMu   sync.Mutex

	asyncMu  sync.Mutex
	async    *asyncChannel // PublishAsync's channel; nil until first used
	inFlight chan struct{} // PublishAsync's publishes not yet waited for
}

type pubChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return
	closed  chan *amqp.Error
}

// NewPublisher connects to the broker, declares the exchange and returns a
// Publisher.
func NewPublisher(cfg Config) (*Publisher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	wcfg := cfg.WatermillConfig()
	log := watermill.NewSlogLogger(cfg.Logger)
	conn, err := wmamqp.NewConnection(wcfg.Connection, log)
	if err != nil {
		return nil, fmt.Errorf("amqp: connect: %w", err)
	}
	p := &Publisher{cfg: cfg, wcfg: wcfg, conn: conn, log: log, pool: make(chan *pubChannel, 8),
		inFlight: make(chan struct{}, asyncMaxInFlight)}
	if err := p.withChannel(func(ch *amqp.Channel) error {
		return wcfg.TopologyBuilder.ExchangeDeclare(ch, cfg.Exchange, wcfg)
	}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("amqp: declare exchange %q: %w", cfg.Exchange, err)
	}
	return p, nil
}

// withChannel runs fn on a short-lived plain channel (declarations close
// the channel on error, so they get their own).
func (p *Publisher) withChannel(fn func(*amqp.Channel) error) error {
	ch, err := p.conn.Connection().Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return fn(ch)
}

func (p *Publisher) ensureQueue(topic string) error {
	if p.cfg.SkipQueueDeclare {
		return nil
	}
	if _, ok := p.declared.Load(topic); ok {
		return nil
	}
	p.declMu.Lock()
	defer p.declMu.Unlock()
	if _, ok := p.declared.Load(topic); ok {
		return nil
	}
	q := QueueName(p.cfg.ConsumerGroup, topic)
	err := p.withChannel(func(ch *amqp.Channel) error {
		return p.wcfg.TopologyBuilder.BuildTopology(ch, wmamqp.BuildTopologyParams{
			Topic: topic, QueueName: q, ExchangeName: p.cfg.Exchange, RoutingKey: topic,
		}, p.wcfg, p.log)
	})
	if err != nil {
		return fmt.Errorf("amqp: declare queue %q bound to %q: %w", q, p.cfg.Exchange, err)
	}
	p.declared.Store(topic, struct{}{})
	return nil
}

func (p *Publisher) channel() (*pubChannel, error) {
	for {
		select {
		case c := <-p.pool:
			if !c.ch.IsClosed() {
				return c, nil
			}
			continue
		default:
		}
		break
	}
	ch, err := p.confirmChannel()
	if err != nil {
		return nil, err
	}
	return &pubChannel{
		ch:      ch,
		returns: ch.NotifyReturn(make(chan amqp.Return, 16)),
		closed:  ch.NotifyClose(make(chan *amqp.Error, 1)),
	}, nil
}

// confirmChannel opens a channel in confirm mode.
func (p *Publisher) confirmChannel() (*amqp.Channel, error) {
	if !p.conn.IsConnected() {
		return nil, errors.New("amqp: not connected")
	}
	ch, err := p.conn.Connection().Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("amqp: enable publisher confirms: %w", err)
	}
	return ch, nil
}

func (p *Publisher) release(c *pubChannel, healthy bool) {
	if healthy && !c.ch.IsClosed() {
		select {
		case p.pool <- c:
			return
		default:
		}
	}
	_ = c.ch.Close()
}

// Publish implements message.Publisher. It returns once the broker confirmed
// every message, in order, or with the first failure: ErrUnroutable,
// ErrNacked, a confirm timeout or a connection error.
func (p *Publisher) Publish(topic string, messages ...*message.Message) error {
	if err := validateTopic(topic); err != nil {
		return err
	}
	if p.conn.Closed() {
		return errors.New("amqp: publisher closed")
	}
	if err := p.ensureQueue(topic); err != nil {
		return err
	}
	c, err := p.channel()
	if err != nil {
		return err
	}
	healthy := true
	defer func() { p.release(c, healthy) }()
	for _, msg := range messages {
		if err := p.publishOne(c, topic, msg); err != nil {
			if !errors.Is(err, ErrUnroutable) && !errors.Is(err, ErrNacked) {
				healthy = false
			}
			return err
		}
	}
	return nil
}

func (p *Publisher) publishOne(c *pubChannel, topic string, msg *message.Message) error {
	pub, err := p.wcfg.Marshaler.Marshal(msg)
	if err != nil {
		return fmt.Errorf("amqp: marshal message %s: %w", msg.UUID, err)
	}
	ctx, cancel := context.WithTimeout(msg.Context(), p.cfg.PublishTimeout)
	defer cancel()
	dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, topic, true, false, pub)
	if err != nil {
		return fmt.Errorf("amqp: publish message %s: %w", msg.UUID, err)
	}
	ack, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("amqp: no publisher confirm for message %s: %w", msg.UUID, err)
	}
	// RabbitMQ sends basic.return before the confirm, and amqp091 hands it
	// to the returns channel before it resolves the confirm, so a returned
	// message is already waiting here.
	select {
	case r, open := <-c.returns:
		if open {
			return fmt.Errorf("%w: message %s to exchange %q with routing key %q: %d %s",
				ErrUnroutable, r.MessageId, r.Exchange, r.RoutingKey, r.ReplyCode, r.ReplyText)
		}
	default:
	}
	if !ack {
		return fmt.Errorf("%w: message %s", ErrNacked, msg.UUID)
	}
	return nil
}

var _ outbox.AsyncPublisher = (*Publisher)(nil)

// asyncMaxInFlight bounds PublishAsync's publishes whose wait has not
// returned; beyond it PublishAsync waits for room (until msg's context
// ends). It is also the capacity of the channel's returns buffer, so that
// RabbitMQ's basic.return frames never block the connection.
const asyncMaxInFlight = 4096

// asyncChannel is the confirm-mode channel PublishAsync pipelines its
// publishes on.
type asyncChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return // capacity asyncMaxInFlight

	mu       sync.Mutex
	returned map[string]amqp.Return // by message id, drained from returns
}

// takeReturn reports whether the broker returned the message with id as
// unroutable. RabbitMQ sends basic.return before the message's confirm and
// amqp091 queues it on returns before it resolves the confirm, so once the
// confirm is in, the return (if any) is queued or already taken.
func (a *asyncChannel) takeReturn(id string) (amqp.Return, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for drained := false; !drained; {
		select {
		case r, open := <-a.returns:
			if !open {
				// amqp091 closes it with the channel: nothing more to come.
				drained = true
				break
			}
			a.returned[r.MessageId] = r
		default:
			drained = true
		}
	}
	r, ok := a.returned[id]
	delete(a.returned, id)
	return r, ok
}

// asyncChannel returns PublishAsync's channel, opening a new one when there
// is none or the last one closed.
func (p *Publisher) asyncChannel() (*asyncChannel, error) {
	p.asyncMu.Lock()
	defer p.asyncMu.Unlock()
	if p.async != nil && !p.async.ch.IsClosed() {
		return p.async, nil
	}
	ch, err := p.confirmChannel()
	if err != nil {
		return nil, err
	}
	p.async = &asyncChannel{
		ch:       ch,
		returns:  ch.NotifyReturn(make(chan amqp.Return, asyncMaxInFlight)),
		returned: map[string]amqp.Return{},
	}
	return p.async, nil
}

// PublishAsync implements outbox.AsyncPublisher: it publishes msg as Publish
// does (same exchange, routing key, properties, mandatory flag) on one
// confirm-mode channel shared by all its publishes, without waiting for the
// publisher confirm; wait returns nil once the broker confirmed msg,
// ErrUnroutable or ErrNacked (wrapped) as Publish does, or an error when the
// channel closed first or ctx ended (outcome unknown). wait must be called
// once for every publish PublishAsync started.
func (p *Publisher) PublishAsync(topic string, msg *message.Message) (wait func(context.Context) error, err error) {
	if err := validateTopic(topic); err != nil {
		return nil, err
	}
	if p.conn.Closed() {
		return nil, errors.New("amqp: publisher closed")
	}
	if err := p.ensureQueue(topic); err != nil {
		return nil, err
	}
	pub, err := p.wcfg.Marshaler.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("amqp: marshal message %s: %w", msg.UUID, err)
	}
	select {
	case p.inFlight <- struct{}{}:
	case <-msg.Context().Done():
		return nil, fmt.Errorf("amqp: publish message %s: %w", msg.UUID, msg.Context().Err())
	}
	release := sync.OnceFunc(func() { <-p.inFlight })
	a, err := p.asyncChannel()
	if err != nil {
		release()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(msg.Context(), p.cfg.PublishTimeout)
	dc, err := a.ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, topic, true, false, pub)
	cancel()
	if err != nil {
		release()
		return nil, fmt.Errorf("amqp: publish message %s: %w", msg.UUID, err)
	}
	return func(ctx context.Context) error {
		defer release()
		ack, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("amqp: no publisher confirm for message %s: %w", msg.UUID, err)
		}
		if r, ok := a.takeReturn(pub.MessageId); ok {
			return fmt.Errorf("%w: message %s to exchange %q with routing key %q: %d %s",
				ErrUnroutable, r.MessageId, r.Exchange, r.RoutingKey, r.ReplyCode, r.ReplyText)
		}
		if !ack {
			if a.ch.IsClosed() {
				return fmt.Errorf("amqp: channel closed before the publisher confirm of message %s", msg.UUID)
			}
			return fmt.Errorf("%w: message %s", ErrNacked, msg.UUID)
		}
		return nil
	}, nil
}

// Close implements message.Publisher; it closes the connection.
func (p *Publisher) Close() error {
	for {
		select {
		case c := <-p.pool:
			_ = c.ch.Close()
			continue
		default:
		}
		break
	}
	p.asyncMu.Lock()
	if p.async != nil {
		_ = p.async.ch.Close()
		p.async = nil
	}
	p.asyncMu.Unlock()
	return p.conn.Close()
}

// NewSubscriber returns watermill-amqp's subscriber over the durable queue
// QueueName(ConsumerGroup, topic), declared and bound on Subscribe, with
// prefetch 1 and manual acks (a nacked message is requeued).
func NewSubscriber(cfg Config) (*wmamqp.Subscriber, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sub, err := wmamqp.NewSubscriber(cfg.WatermillConfig(), watermill.NewSlogLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("amqp: new subscriber: %w", err)
	}
	return sub, nil
}
