package redisstream

import (
	"context"
	"errors"
	"fmt"
	"sync"

	wmredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// asyncMaxInFlight bounds PublishAsync's XADDs queued and not yet sent;
// beyond it PublishAsync waits for room (until msg's context ends).
const asyncMaxInFlight = 4096

// maxPipeline bounds the XADDs of one pipeline (one round trip).
const maxPipeline = 512

// ErrPublisherClosed is returned by Publish and PublishAsync after Close.
var ErrPublisherClosed = errors.New("redisstream: publisher closed")

// Publisher is a message.Publisher over Redis Streams: Publish sends one
// XADD per message and returns once Redis answered each (watermill-
// redisstream's publisher). It is also an outbox.AsyncPublisher:
// PublishAsync queues the same XADD for a loop that sends everything queued
// in one pipeline (one round trip for up to 512 entries) and resolves each
// publish with its own reply.
type Publisher struct {
	pub    *wmredis.Publisher
	client *redis.Client
	maxLen int64

	mu     sync.RWMutex // guards closed and sends on queue
	closed bool
	queue  chan *xadd    // PublishAsync -> pipeline, in call order
	done   chan struct{} // closed when pipeline returned
}

var _ outbox.AsyncPublisher = (*Publisher)(nil)

// xadd is one queued PublishAsync.
type xadd struct {
	topic  string
	id     string // message UUID, for errors
	values map[string]any
	err    error
	sent   chan struct{} // closed once err is set
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

// PublishAsync implements outbox.AsyncPublisher: it queues the XADD
// Publish would send (same stream, fields and MAXLEN) and returns; wait
// returns Redis's reply to it: nil once the entry was added, Redis's or the
// connection's error otherwise, or ctx's error if ctx ended first (outcome
// unknown). XADDs are sent in the order PublishAsync was called. wait may be
// called at most once; not calling it leaks nothing.
func (p *Publisher) PublishAsync(topic string, msg *message.Message) (wait func(context.Context) error, err error) {
	values, err := (Marshaller{}).Marshal(topic, msg)
	if err != nil {
		return nil, fmt.Errorf("redisstream: marshal message %s: %w", msg.UUID, err)
	}
	x := &xadd{topic: topic, id: msg.UUID, values: values, sent: make(chan struct{})}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return nil, ErrPublisherClosed
	}
	select {
	case p.queue <- x:
		p.mu.RUnlock()
	case <-msg.Context().Done():
		p.mu.RUnlock()
		return nil, fmt.Errorf("redisstream: publish message %s: %w", msg.UUID, msg.Context().Err())
	}
	return func(ctx context.Context) error {
		select {
		case <-x.sent:
			return x.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// pipeline sends the queued XADDs, as many as are queued (up to
// maxPipeline) in one round trip, until Close closed the queue and it is
// drained.
func (p *Publisher) pipeline() {
	defer close(p.done)
	batch := make([]*xadd, 0, maxPipeline)
	for x := range p.queue {
		batch = append(batch[:0], x)
	fill:
		for len(batch) < maxPipeline {
			select {
			case x, ok := <-p.queue:
				if !ok {
					break fill
				}
				batch = append(batch, x)
			default:
				break fill
			}
		}
		p.send(batch)
	}
}

// send runs one pipeline and resolves each XADD with its reply.
func (p *Publisher) send(batch []*xadd) {
	pipe := p.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(batch))
	for i, x := range batch {
		cmds[i] = pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: x.topic, Values: x.values, MaxLen: p.maxLen, Approx: true})
	}
	_, _ = pipe.Exec(context.Background()) // each command carries its own error
	for i, x := range batch {
		if err := cmds[i].Err(); err != nil {
			x.err = fmt.Errorf("redisstream: xadd message %s to %q: %w", x.id, x.topic, err)
		}
		close(x.sent)
	}
}

// Close implements message.Publisher: it stops accepting publishes, sends
// the XADDs already queued by PublishAsync (their waits return), and
// closes the client.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.queue)
	p.mu.Unlock()
	<-p.done
	return p.pub.Close() // closes the client
}
