package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// asyncMaxInFlight bounds PublishAsync's records not yet acknowledged or
// failed; beyond it PublishAsync waits for room (until msg's context ends).
const asyncMaxInFlight = 4096

// ErrPublisherClosed is returned by Publish and PublishAsync after Close.
var ErrPublisherClosed = errors.New("kafka: publisher closed")

// Publisher is a message.Publisher whose Publish waits for every record's
// acknowledgement (watermill-kafka's synchronous publisher). It is also an
// outbox.AsyncPublisher: PublishAsync hands records to a sarama async
// producer, built with the same configuration on first use, and wait
// returns each record's own acknowledgement or error.
type Publisher struct {
	cfg Config
	pub *wmkafka.Publisher

	inFlight chan struct{} // PublishAsync's records not yet resolved

	mu       sync.RWMutex // guards closed, async and sends on async.Input()
	closed   bool
	async    sarama.AsyncProducer // nil until the first PublishAsync
	resolved chan struct{}        // closed when resolve returned
}

var _ outbox.AsyncPublisher = (*Publisher)(nil)

// record is one PublishAsync in flight; it travels as the producer
// message's Metadata.
type record struct {
	id    string
	topic string
	err   error
	acked chan struct{} // closed once err is set
}

// Publish implements message.Publisher.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	closed := p.closed
	p.mu.RUnlock()
	if closed {
		return ErrPublisherClosed
	}
	return p.pub.Publish(topic, msgs...)
}

// PublishAsync implements outbox.AsyncPublisher: it hands the record
// Publish would send (same key, partition, headers) to the async producer
// and returns; wait returns nil once all in-sync replicas have it, the
// producer's error for it, or ctx's error if ctx ended first (outcome
// unknown). Records of one partition are written in PublishAsync call
// order. wait may be called at most once; not calling it leaks nothing.
func (p *Publisher) PublishAsync(topic string, msg *message.Message) (wait func(context.Context) error, err error) {
	pm, err := Marshaler{}.Marshal(topic, msg)
	if err != nil {
		return nil, fmt.Errorf("kafka: marshal message %s: %w", msg.UUID, err)
	}
	r := &record{id: msg.UUID, topic: topic, acked: make(chan struct{})}
	pm.Metadata = r
	select {
	case p.inFlight <- struct{}{}:
	case <-msg.Context().Done():
		return nil, fmt.Errorf("kafka: publish message %s: %w", msg.UUID, msg.Context().Err())
	}
	if err := p.send(pm); err != nil {
		<-p.inFlight
		return nil, err
	}
	return func(ctx context.Context) error {
		select {
		case <-r.acked:
			return r.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// send hands pm to the async producer, starting it on first use.
func (p *Publisher) send(pm *sarama.ProducerMessage) error {
	p.mu.RLock()
	if p.async == nil && !p.closed {
		p.mu.RUnlock()
		if err := p.startAsync(); err != nil {
			return err
		}
		p.mu.RLock()
	}
	defer p.mu.RUnlock()
	if p.closed {
		return ErrPublisherClosed
	}
	// The producer's input stays open until Close, which waits for this
	// read lock.
	p.async.Input() <- pm
	return nil
}

func (p *Publisher) startAsync() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.async != nil || p.closed {
		return nil
	}
	ap, err := sarama.NewAsyncProducer(p.cfg.Brokers, p.cfg.SaramaProducerConfig())
	if err != nil {
		return fmt.Errorf("kafka: new async producer: %w", err)
	}
	p.async = ap
	p.resolved = make(chan struct{})
	go p.resolve(ap)
	return nil
}

// resolve matches the producer's successes and errors to their records
// until both channels close (after AsyncClose).
func (p *Publisher) resolve(ap sarama.AsyncProducer) {
	defer close(p.resolved)
	successes, errs := ap.Successes(), ap.Errors()
	for successes != nil || errs != nil {
		select {
		case pm, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			p.settle(pm, nil)
		case pe, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			p.settle(pe.Msg, pe.Err)
		}
	}
}

func (p *Publisher) settle(pm *sarama.ProducerMessage, err error) {
	r, ok := pm.Metadata.(*record)
	if !ok {
		return
	}
	if err != nil {
		r.err = fmt.Errorf("kafka: produce message %s to %q: %w", r.id, r.topic, err)
	}
	close(r.acked)
	<-p.inFlight
}

// Close implements message.Publisher: it stops accepting publishes, lets
// the async producer deliver (or fail) the records PublishAsync already
// handed over, so that their waits return, and closes both producers. With
// the cluster unreachable that takes as long as sarama's retries
// (Producer.Retry and Net timeouts, set through Config.Sarama).
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	ap := p.async
	p.mu.Unlock()
	if ap != nil {
		ap.AsyncClose()
		<-p.resolved
	}
	return p.pub.Close()
}
