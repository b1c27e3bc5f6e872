package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
	// The envelope is JSON: a string that is not valid UTF-8 would reach the
	// broker altered (each bad byte becomes U+FFFD). Such a row cannot be
	// forwarded as stored; the direct path carries it unchanged.
	if !utf8.ValidString(row.Topic) {
		return nil, errors.New("topic is not valid UTF-8: the forwarder envelope (JSON) would alter it")
	}
	for k, v := range inner.Metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("metadata %q is not valid UTF-8: the forwarder envelope (JSON) would alter it", strings.ToValidUTF8(k, "?"))
		}
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

// publishPath is how a PublishPath hands events to the broker, for the
// scheduler.
type publishPath interface {
	// message builds the message for row; an error means the row cannot be
	// published at all (it is marked dead).
	message(row *outboxdriver.EventRow) (*message.Message, error)
	// begin starts publishing msg to topic. An error means the attempt
	// failed at once, or errAborted that hardCtx had ended: nothing is in
	// flight. Otherwise done is called exactly once, from any goroutine,
	// with the outcome: nil once the broker acknowledged msg, errAborted
	// when hardCtx ended first (outcome unknown), a timeout error when no
	// outcome came within PublishTimeout, or the attempt's error.
	begin(hardCtx context.Context, topic string, msg *message.Message, done func(error)) error
	// close ends the path's idle goroutines; busy ones end after their call.
	close()
}

// timeoutError is the outcome of a publish unanswered after timeout.
func timeoutError(timeout time.Duration) error {
	return fmt.Errorf("no broker acknowledgement within PublishTimeout %s", timeout)
}

// attempt is one publish in flight: done runs once, with the path's
// outcome, or a timeout error PublishTimeout after the start, or errAborted
// when hardCtx ends, whichever comes first. So an outcome always arrives in
// time, even from a Publish or a wait that never returns (its goroutine
// then stays busy until it does; the pools bound how many there are).
type attempt struct {
	once     sync.Once
	mu       sync.Mutex
	done     func(error)
	over     chan struct{} // closed once the outcome is reported
	deadline time.Time
	timer    *time.Timer
	stop     func() bool
	hardCtx  context.Context
	afters   map[*func()]struct{} // attemptContext.AfterFunc callbacks; nil once over
}

func newAttempt(hardCtx context.Context, timeout time.Duration, done func(error)) *attempt {
	a := &attempt{done: done, over: make(chan struct{}), deadline: time.Now().Add(timeout), hardCtx: hardCtx}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.timer = time.AfterFunc(timeout, func() { a.finish(timeoutError(timeout)) })
	a.stop = context.AfterFunc(hardCtx, func() { a.finish(errAborted) })
	return a
}

// finish reports err unless an outcome was reported already.
func (a *attempt) finish(err error) {
	a.once.Do(func() {
		a.mu.Lock()
		a.timer.Stop()
		a.stop()
		afters := a.afters
		a.afters = nil
		close(a.over)
		a.mu.Unlock()
		for f := range afters {
			go (*f)()
		}
		a.done(err)
	})
}

// context returns a context that ends when the attempt has its outcome:
// what a wait for the broker's answer gets. It costs no timer and no
// registration with a parent (a context.WithDeadline per event was about
// 6 % of the relay's CPU): the attempt's own timer and abort already end it.
func (a *attempt) context() context.Context { return attemptContext{a} }

// attemptContext is attempt.context. It carries the values of the relay's
// context, its deadline is the attempt's PublishTimeout, and it implements
// AfterFunc, so a context derived from it (context.WithCancel and the like)
// is canceled through a callback rather than a goroutine of its own.
type attemptContext struct{ a *attempt }

func (c attemptContext) Deadline() (time.Time, bool) { return c.a.deadline, true }
func (c attemptContext) Done() <-chan struct{}       { return c.a.over }
func (c attemptContext) Value(key any) any           { return c.a.hardCtx.Value(key) }

func (c attemptContext) Err() error {
	switch {
	case !c.a.isOver():
		return nil
	case c.a.hardCtx.Err() == nil && !time.Now().Before(c.a.deadline):
		return context.DeadlineExceeded
	}
	return context.Canceled
}

// AfterFunc runs f once the attempt is over, the way context.AfterFunc
// does; the context package uses it to cancel derived contexts.
func (c attemptContext) AfterFunc(f func()) (stop func() bool) {
	a := c.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.isOver() {
		go f()
		return func() bool { return false }
	}
	if a.afters == nil {
		a.afters = map[*func()]struct{}{}
	}
	a.afters[&f] = struct{}{}
	return func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		if _, ok := a.afters[&f]; !ok {
			return false
		}
		delete(a.afters, &f)
		return true
	}
}

// isOver reports whether the attempt's outcome has been reported.
func (a *attempt) isOver() bool {
	select {
	case <-a.over:
		return true
	default:
		return false
	}
}

// pool runs the work of attempts on at most max goroutines, started as
// jobs need them and kept for the next jobs (their stacks, grown by the
// broker client, are reused rather than grown again for every event). A
// job whose attempt is over before a goroutine takes it (timed out behind
// Publish calls that do not return) is dropped, so a broker that hangs
// every call ties up at most max goroutines and no queue grows.
type pool struct {
	mu    sync.Mutex
	cond  *sync.Cond
	queue []poolJob
	max   int
	n     int // goroutines started
	idle  int // goroutines waiting for a job
	quit  bool
}

type poolJob struct {
	a   *attempt
	run func()
}

// newPool returns a pool of at most max goroutines.
func newPool(max int) *pool {
	p := &pool{max: max}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// submit queues the work of attempt a; it never blocks.
func (p *pool) submit(a *attempt, run func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) > 0 && p.queue[0].a.isOver() {
		p.queue = p.queue[1:]
	}
	p.queue = append(p.queue, poolJob{a, run})
	switch {
	case p.idle > 0:
		// The waiter this wakes is no longer idle from now on: a second
		// submit before it runs must wake another one (or start one), not
		// count on it and leave its job queued behind a busy goroutine.
		p.idle--
		p.cond.Signal()
	case p.n < p.max:
		p.n++
		go p.work()
	}
}

func (p *pool) work() {
	p.mu.Lock()
	for {
		for len(p.queue) == 0 && !p.quit {
			p.idle++ // submit takes it back when it signals
			p.cond.Wait()
		}
		if len(p.queue) == 0 {
			p.n--
			p.mu.Unlock()
			return
		}
		job := p.queue[0]
		p.queue = p.queue[1:]
		p.mu.Unlock()
		if !job.a.isOver() {
			job.run()
		}
		p.mu.Lock()
	}
}

// close ends the idle goroutines; busy ones end after their job.
func (p *pool) close() {
	p.mu.Lock()
	p.quit = true
	p.idle = 0
	p.cond.Broadcast()
	p.mu.Unlock()
}

// forwarderPath is PublishForwarder: envelopes go through the table
// subscriber to Watermill's forwarder, whose router publishes each on a
// goroutine of its own and acks or nacks it.
type forwarderPath struct {
	sub     *tableSubscriber
	timeout time.Duration
	waiters *pool
}

func (p *forwarderPath) message(row *outboxdriver.EventRow) (*message.Message, error) {
	return envelope(row)
}

func (p *forwarderPath) begin(hardCtx context.Context, _ string, msg *message.Message, done func(error)) error {
	slot := &errorSlot{}
	msg.SetContext(context.WithValue(hardCtx, errorSlotKey{}, slot))
	select {
	case p.sub.out <- msg:
	case <-hardCtx.Done():
		return errAborted
	}
	a := newAttempt(hardCtx, p.timeout, done)
	p.waiters.submit(a, func() {
		select {
		case <-msg.Acked():
			a.finish(nil)
		case <-msg.Nacked():
			if err := slot.get(); err != nil {
				a.finish(err)
				return
			}
			a.finish(errors.New("forwarder nacked the message (handler panicked or a middleware nacked it)"))
		case <-a.over: // timed out or aborted
		}
	})
	return nil
}

func (p *forwarderPath) close() { p.waiters.close() }

type topicKey struct{}

// eventMessages gives the PublishDirect paths their message method: the
// event message itself, no envelope.
type eventMessages struct{}

func (eventMessages) message(row *outboxdriver.EventRow) (*message.Message, error) {
	return eventMessage(row)
}

// directPath is PublishDirect over a Publisher's blocking Publish (or with
// Middlewares): the event message goes through the middlewares to the
// Publisher on a goroutine of a bounded pool.
type directPath struct {
	eventMessages
	handler message.HandlerFunc
	timeout time.Duration
	workers *pool
}

func newDirectPath(pub message.Publisher, middlewares []message.HandlerMiddleware, timeout time.Duration, window int) *directPath {
	h := func(msg *message.Message) ([]*message.Message, error) {
		topic, _ := msg.Context().Value(topicKey{}).(string)
		return nil, pub.Publish(topic, msg)
	}
	// Applied as Watermill's router applies handler middlewares: the first
	// one is the outermost.
	for i := len(middlewares) - 1; i >= 0; i-- {
		h = middlewares[i](h)
	}
	return &directPath{handler: h, timeout: timeout, workers: newPool(window)}
}

func (p *directPath) begin(hardCtx context.Context, topic string, msg *message.Message, done func(error)) error {
	msg.SetContext(context.WithValue(hardCtx, topicKey{}, topic))
	a := newAttempt(hardCtx, p.timeout, done)
	p.workers.submit(a, func() { a.finish(p.call(msg)) })
	return nil
}

func (p *directPath) call(msg *message.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("publish handler panicked: %v", r)
		}
	}()
	if _, err = p.handler(msg); err != nil {
		return firstLine(err)
	}
	return nil
}

func (p *directPath) close() { p.workers.close() }

// asyncPath is PublishDirect over an AsyncPublisher (no middlewares): one
// starter goroutine calls PublishAsync for each event in turn, and a
// bounded pool waits for the outcomes. PublishAsync runs off the
// scheduler's goroutine because a client may block in it (nats.go writes to
// the socket when its buffer is full, and a stalled broker that reads
// nothing blocks that write until the connection is declared dead): the
// attempts then time out and the scheduler goes on; starts queued behind
// the blocked one are dropped once their attempt is over.
type asyncPath struct {
	eventMessages
	pub     AsyncPublisher
	timeout time.Duration
	starter *pool // one goroutine
	waiters *pool
}

func newAsyncPath(pub AsyncPublisher, timeout time.Duration, window int) *asyncPath {
	return &asyncPath{pub: pub, timeout: timeout, starter: newPool(1), waiters: newPool(window)}
}

func (p *asyncPath) begin(hardCtx context.Context, topic string, msg *message.Message, done func(error)) error {
	if hardCtx.Err() != nil {
		return errAborted
	}
	msg.SetContext(hardCtx)
	a := newAttempt(hardCtx, p.timeout, done)
	p.starter.submit(a, func() {
		wait, err := p.start(topic, msg)
		if err != nil {
			a.finish(err)
			return
		}
		p.waiters.submit(a, func() { a.finish(p.wait(a, wait)) })
	})
	return nil
}

// start calls PublishAsync; a panic in it is an error.
func (p *asyncPath) start(topic string, msg *message.Message) (wait func(context.Context) error, err error) {
	defer func() {
		if r := recover(); r != nil {
			wait, err = nil, fmt.Errorf("PublishAsync panicked: %v", r)
		}
	}()
	wait, err = p.pub.PublishAsync(topic, msg)
	if err != nil {
		return nil, firstLine(err)
	}
	return wait, nil
}

// wait returns the outcome of a's publish: nil once acknowledged, or the
// broker's error. The wait's context ends when a is over (timed out or
// aborted), whose outcome is then reported already and this one dropped.
func (p *asyncPath) wait(a *attempt, wait func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("PublishAsync's wait panicked: %v", r)
		}
	}()
	if err = wait(a.context()); err != nil {
		return firstLine(err)
	}
	return nil
}

func (p *asyncPath) close() {
	p.starter.close()
	p.waiters.close()
}

// firstLine keeps the first line of err: Watermill's wrapped errors (and
// some middlewares') append a stack trace.
func firstLine(err error) error {
	if first, _, cut := strings.Cut(err.Error(), "\n"); cut {
		return errors.New(first)
	}
	return err
}
