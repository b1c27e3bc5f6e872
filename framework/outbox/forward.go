package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// forwarderEnvelope is the JSON envelope Watermill's forwarder
// (components/forwarder) unwraps: same field names, so the stock forwarder
// publishes our messages unchanged.
type forwarderEnvelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

// eventMessage turns a claimed row into the message the broker receives:
// the event id as UUID, the payload, and the event's metadata. It is what
// Watermill's forwarder unwraps from the envelope, byte for byte.
func eventMessage(row *outboxdriver.EventRow) (*message.Message, error) {
	if row.Topic == "" {
		return nil, errors.New("empty topic")
	}
	md, err := decodeHeaders(row.Headers)
	if err != nil {
		return nil, err
	}
	md[MetadataEventID] = row.ID
	md[MetadataEventType] = row.Type
	md[MetadataKey] = row.Key
	md[MetadataCreatedAt] = row.CreatedAt.UTC().Format(time.RFC3339Nano)
	msg := message.NewMessage(row.ID, row.Payload)
	msg.Metadata = md
	return msg, nil
}

// envelope turns a claimed row into the forwarder's enveloped message. The
// event id is both the envelope's and the published message's UUID, and the
// event's metadata is on both.
func envelope(row *outboxdriver.EventRow) (*message.Message, error) {
	inner, err := eventMessage(row)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(forwarderEnvelope{DestinationTopic: row.Topic, UUID: row.ID, Payload: row.Payload, Metadata: inner.Metadata})
	if err != nil {
		return nil, err
	}
	msg := message.NewMessage(row.ID, b)
	// Router middlewares see the envelope, not the unwrapped message: give
	// it the event's metadata too (tracing, metrics, logging middlewares).
	msg.Metadata = inner.Metadata
	return msg, nil
}

type errorSlotKey struct{}

// errorSlot carries the forwarder handler's error back to the worker, which
// only sees Ack/Nack and needs the reason for last_error.
type errorSlot struct {
	mu  sync.Mutex
	err error
}

func (s *errorSlot) get() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// setOnce records err unless an error is already recorded: the broker's own
// error (set by slotPublisher) wins over the forwarder's wrapped version.
func (s *errorSlot) setOnce(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func slotOf(msg *message.Message) *errorSlot {
	slot, _ := msg.Context().Value(errorSlotKey{}).(*errorSlot)
	return slot
}

// captureError is the first middleware of the forwarder handler: it keeps a
// middleware's error (first line only: Watermill's wrapped errors append a
// stack trace) for last_error.
func captureError(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil {
			if slot := slotOf(msg); slot != nil {
				slot.setOnce(firstLine(err))
			}
		}
		return out, err
	}
}

// slotPublisher wraps the broker publisher to keep the broker's own error,
// unwrapped, for last_error. The forwarder gives the unwrapped message the
// envelope's context, so the slot is reachable here.
type slotPublisher struct{ message.Publisher }

// Publish implements message.Publisher.
func (p slotPublisher) Publish(topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(topic, msgs...)
	if err != nil {
		for _, m := range msgs {
			if slot := slotOf(m); slot != nil {
				slot.setOnce(err)
			}
		}
	}
	return err
}

// quietRouterLogger demotes the router's per-message "Handler returned error"
// (which prints a stack trace) to debug: the relay logs every failed attempt
// itself, once, with the event id and the retry plan.
type quietRouterLogger struct{ watermill.LoggerAdapter }

// Error implements watermill.LoggerAdapter.
func (l quietRouterLogger) Error(msg string, err error, fields watermill.LogFields) {
	if msg == "Handler returned error" {
		l.LoggerAdapter.Debug(msg, fields.Add(watermill.LogFields{"err": err}))
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

// With implements watermill.LoggerAdapter.
func (l quietRouterLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return quietRouterLogger{l.LoggerAdapter.With(fields)}
}

// tableSubscriber is the message.Subscriber the forwarder consumes. The
// worker pushes claimed events into out; the forwarder's router runs each in
// its own goroutine and acks or nacks it once the broker answered.
type tableSubscriber struct {
	out       chan *message.Message
	closeOnce sync.Once
	closed    chan struct{}
}

func newTableSubscriber() *tableSubscriber {
	return &tableSubscriber{out: make(chan *message.Message), closed: make(chan struct{})}
}

// Subscribe implements message.Subscriber; the topic is the forwarder topic.
func (s *tableSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	ch := make(chan *message.Message)
	go func() {
		defer close(ch)
		for {
			select {
			case <-s.closed:
				return
			case <-ctx.Done():
				return
			case msg := <-s.out:
				select {
				case ch <- msg:
				case <-s.closed:
					msg.Nack()
					return
				}
			}
		}
	}()
	return ch, nil
}

// Close implements message.Subscriber.
func (s *tableSubscriber) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// forwarderSender is PublishForwarder: envelopes go through the table
// subscriber to Watermill's forwarder, which acks or nacks them.
type forwarderSender struct {
	sub     *tableSubscriber
	timeout time.Duration
}

func (s *forwarderSender) message(row *outboxdriver.EventRow) (*message.Message, error) {
	return envelope(row)
}

func (s *forwarderSender) publish(hardCtx context.Context, _ string, msg *message.Message) error {
	slot := &errorSlot{}
	msg.SetContext(context.WithValue(hardCtx, errorSlotKey{}, slot))
	select {
	case s.sub.out <- msg:
	case <-hardCtx.Done():
		return errAborted
	}
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	select {
	case <-msg.Acked():
		return nil
	case <-msg.Nacked():
		if err := slot.get(); err != nil {
			return err
		}
		return errors.New("forwarder nacked the message (handler panicked or a middleware nacked it)")
	case <-timer.C:
		return fmt.Errorf("no broker acknowledgement within PublishTimeout %s", s.timeout)
	case <-hardCtx.Done():
		return errAborted
	}
}

type topicKey struct{}

// eventMessages gives the PublishDirect senders their message method: the
// event message itself, no envelope.
type eventMessages struct{}

func (eventMessages) message(row *outboxdriver.EventRow) (*message.Message, error) {
	return eventMessage(row)
}

// directSender is PublishDirect: the event message goes through the
// middlewares to the Publisher on a publishing goroutine, so that
// PublishTimeout holds even when a Publish never returns. Publishing
// goroutines live as long as the sender and take one call after another:
// their stacks, grown by the broker client, are reused rather than grown
// again for every event.
type directSender struct {
	eventMessages
	handler message.HandlerFunc
	timeout time.Duration
	calls   chan *directCall // unbuffered: a send succeeds only if a goroutine is idle
	quit    chan struct{}
}

// directCall is one publish handed to a publishing goroutine.
type directCall struct {
	msg  *message.Message
	done chan error // buffered: the goroutine never waits for the caller
}

func newDirectSender(pub message.Publisher, middlewares []message.HandlerMiddleware, timeout time.Duration) *directSender {
	h := func(msg *message.Message) ([]*message.Message, error) {
		topic, _ := msg.Context().Value(topicKey{}).(string)
		return nil, pub.Publish(topic, msg)
	}
	// Applied as Watermill's router applies handler middlewares: the first
	// one is the outermost.
	for i := len(middlewares) - 1; i >= 0; i-- {
		h = middlewares[i](h)
	}
	return &directSender{handler: h, timeout: timeout, calls: make(chan *directCall), quit: make(chan struct{})}
}

// close ends the idle publishing goroutines; busy ones end after their call.
func (s *directSender) close() { close(s.quit) }

func (s *directSender) publish(hardCtx context.Context, topic string, msg *message.Message) error {
	msg.SetContext(context.WithValue(hardCtx, topicKey{}, topic))
	c := &directCall{msg: msg, done: make(chan error, 1)}
	select {
	case s.calls <- c:
	default:
		go s.serve(c)
	}
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	select {
	case err := <-c.done:
		if err != nil {
			return firstLine(err)
		}
		return nil
	case <-timer.C:
		return fmt.Errorf("no broker acknowledgement within PublishTimeout %s", s.timeout)
	case <-hardCtx.Done():
		return errAborted
	}
}

// serve runs c, then further calls, until the sender is closed.
func (s *directSender) serve(c *directCall) {
	for {
		c.done <- s.call(c.msg)
		select {
		case c = <-s.calls:
		case <-s.quit:
			return
		}
	}
}

func (s *directSender) call(msg *message.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("publish handler panicked: %v", p)
		}
	}()
	_, err = s.handler(msg)
	return err
}

// asyncSender is PublishDirect over an AsyncPublisher (no middlewares).
// The relay drives it through start and wait (worker.publishPipelined);
// publish is the two in one.
type asyncSender struct {
	eventMessages
	pub     AsyncPublisher
	timeout time.Duration
}

func (s *asyncSender) publish(hardCtx context.Context, topic string, msg *message.Message) error {
	start := time.Now()
	wait, err := s.start(hardCtx, topic, msg)
	if err != nil {
		return err
	}
	return s.wait(hardCtx, start, wait)
}

// start starts publishing msg; an error means nothing was sent.
func (s *asyncSender) start(hardCtx context.Context, topic string, msg *message.Message) (wait func(context.Context) error, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("PublishAsync panicked: %v", p)
		}
	}()
	msg.SetContext(hardCtx)
	wait, err = s.pub.PublishAsync(topic, msg)
	if err != nil {
		return nil, firstLine(err)
	}
	return wait, nil
}

// wait returns the outcome of a publish started at start: nil once
// acknowledged, errAborted when hardCtx ended first, the timeout error
// PublishTimeout after start, or the broker's error.
func (s *asyncSender) wait(hardCtx context.Context, start time.Time, wait func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("PublishAsync's wait panicked: %v", p)
		}
	}()
	ctx, cancel := context.WithDeadline(hardCtx, start.Add(s.timeout))
	defer cancel()
	err = wait(ctx)
	switch {
	case err == nil:
		return nil
	case hardCtx.Err() != nil:
		return errAborted
	case ctx.Err() != nil:
		return fmt.Errorf("no broker acknowledgement within PublishTimeout %s", s.timeout)
	}
	return firstLine(err)
}

// firstLine keeps the first line of err: Watermill's wrapped errors (and
// some middlewares') append a stack trace.
func firstLine(err error) error {
	if first, _, cut := strings.Cut(err.Error(), "\n"); cut {
		return errors.New(first)
	}
	return err
}
