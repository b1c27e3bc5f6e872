package outbox

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// TestEnvelopeUnwrappedByStockForwarder proves the envelope we build is the
// one Watermill's own forwarder understands: the forwarder, unchanged,
// publishes the original event under its id, topic and metadata.
func TestEnvelopeUnwrappedByStockForwarder(t *testing.T) {
	t.Parallel()
	logger := watermill.NopLogger{}
	in := gochannel.NewGoChannel(gochannel.Config{}, logger)
	out := gochannel.NewGoChannel(gochannel.Config{}, logger)
	fwd, err := forwarder.NewForwarder(in, out, logger, forwarder.Config{ForwarderTopic: "outbox"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = fwd.Run(ctx) }()
	<-fwd.Running()
	received, err := out.Subscribe(ctx, "invoices")
	if err != nil {
		t.Fatal(err)
	}

	row := &outboxdriver.EventRow{
		ID: "0194a1c2-0000-7000-8000-000000000001", Type: "invoice.issued", Topic: "invoices", Key: "inv-7",
		Payload: []byte(`{"amount":"12.50"}`), Headers: []byte(`{"traceparent":"00-abc-def-01"}`),
		CreatedAt: time.Date(2026, 11, 29, 10, 0, 0, 123000, time.UTC),
	}
	env, err := envelope(row)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Publish("outbox", env); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-received:
		m.Ack()
		if m.UUID != row.ID || string(m.Payload) != string(row.Payload) {
			t.Fatalf("unwrapped uuid=%s payload=%s", m.UUID, m.Payload)
		}
		want := map[string]string{
			"traceparent": "00-abc-def-01", MetadataEventID: row.ID, MetadataEventType: "invoice.issued",
			MetadataKey: "inv-7", MetadataCreatedAt: "2026-11-29T10:00:00.000123Z",
		}
		for k, v := range want {
			if got := m.Metadata.Get(k); got != v {
				t.Fatalf("metadata %s = %q, want %q", k, got, v)
			}
		}
		// PublishDirect hands the broker exactly what the forwarder unwraps.
		direct, err := eventMessage(row)
		if err != nil {
			t.Fatal(err)
		}
		if !direct.Equals(m) || len(direct.Metadata) != len(m.Metadata) {
			t.Fatalf("direct message %s %s %v differs from the forwarder's %s %s %v",
				direct.UUID, direct.Payload, direct.Metadata, m.UUID, m.Payload, m.Metadata)
		}
	case <-ctx.Done():
		t.Fatal("forwarder did not publish the unwrapped event")
	}
}

func TestEnvelopeRejectsUnreadableRows(t *testing.T) {
	t.Parallel()
	for name, row := range map[string]*outboxdriver.EventRow{
		"headers not JSON":   {ID: "x", Topic: "t", Headers: []byte("{not json")},
		"headers not string": {ID: "x", Topic: "t", Headers: []byte(`{"a":1}`)},
		"empty topic":        {ID: "x", Headers: []byte(`{}`)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := envelope(row); err == nil {
				t.Fatal("unreadable row accepted")
			}
		})
	}
}

func TestCaptureErrorMiddleware(t *testing.T) {
	t.Parallel()
	slot := &errorSlot{}
	msg := message.NewMessage("id", nil)
	msg.SetContext(context.WithValue(context.Background(), errorSlotKey{}, slot))
	want := context.DeadlineExceeded
	_, err := captureError(func(*message.Message) ([]*message.Message, error) { return nil, want })(msg)
	if err != want || slot.get().Error() != want.Error() {
		t.Fatalf("err=%v slot=%v", err, slot.get())
	}
}

// recordingPublisher records topics and runs fn (when set) instead of
// publishing.
type recordingPublisher struct {
	mu     sync.Mutex
	topics []string
	fn     func(*message.Message) error
}

func (p *recordingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	p.topics = append(p.topics, topic)
	p.mu.Unlock()
	if p.fn != nil {
		return p.fn(msgs[0])
	}
	return nil
}

func (p *recordingPublisher) Close() error { return nil }

func TestDirectPath(t *testing.T) {
	t.Parallel()
	row := &outboxdriver.EventRow{ID: "0194a1c2-0000-7000-8000-000000000002", Type: "t", Topic: "invoices", Payload: []byte("p"), Headers: []byte("{}")}
	send := func(t *testing.T, s *directPath, ctx context.Context) error {
		t.Helper()
		return publishVia(t, s, ctx, row)
	}

	t.Run("middlewares wrap the publish, first outermost", func(t *testing.T) {
		t.Parallel()
		var order []string
		mw := func(name string) message.HandlerMiddleware {
			return func(h message.HandlerFunc) message.HandlerFunc {
				return func(msg *message.Message) ([]*message.Message, error) {
					order = append(order, name+">")
					out, err := h(msg)
					order = append(order, "<"+name)
					return out, err
				}
			}
		}
		pub := &recordingPublisher{fn: func(msg *message.Message) error {
			if msg.UUID != row.ID || msg.Metadata.Get(MetadataEventID) != row.ID {
				t.Errorf("published %s with metadata %v", msg.UUID, msg.Metadata)
			}
			order = append(order, "publish")
			return nil
		}}
		s := newDirectPath(pub, []message.HandlerMiddleware{mw("a"), mw("b")}, time.Minute, 8)
		if err := send(t, s, context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(order, " "); got != "a> b> publish <b <a" {
			t.Fatalf("order %q", got)
		}
		if len(pub.topics) != 1 || pub.topics[0] != "invoices" {
			t.Fatalf("topics %v", pub.topics)
		}
	})
	t.Run("sequential publishes reuse publishing goroutines", func(t *testing.T) {
		t.Parallel()
		var ids []string
		pub := &recordingPublisher{fn: func(*message.Message) error {
			buf := make([]byte, 64)
			id, _, _ := strings.Cut(strings.TrimPrefix(string(buf[:runtime.Stack(buf, false)]), "goroutine "), " ")
			ids = append(ids, id)
			return nil
		}}
		s := newDirectPath(pub, nil, time.Minute, 8)
		defer s.close()
		for range 20 {
			if err := send(t, s, context.Background()); err != nil {
				t.Fatal(err)
			}
			// serve is back waiting for a call once Publish returned; give it
			// the moment between sending the result and receiving again.
			for range 100 {
				runtime.Gosched()
			}
		}
		distinct := map[string]bool{}
		for _, id := range ids {
			distinct[id] = true
		}
		// One goroutine unless the scheduler interleaved badly; one per
		// publish would mean no reuse at all.
		if len(distinct) > 5 {
			t.Fatalf("%d publishing goroutines for 20 sequential publishes: %v", len(distinct), ids)
		}
	})
	t.Run("broker error, first line only", func(t *testing.T) {
		t.Parallel()
		s := newDirectPath(&recordingPublisher{fn: func(*message.Message) error {
			return errors.New("nats: no responders\ngoroutine 1 [running]:")
		}}, nil, time.Minute, 8)
		if err := send(t, s, context.Background()); err == nil || err.Error() != "nats: no responders" {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("panic is an error", func(t *testing.T) {
		t.Parallel()
		s := newDirectPath(&recordingPublisher{fn: func(*message.Message) error { panic("boom") }}, nil, time.Minute, 8)
		if err := send(t, s, context.Background()); err == nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("a publish that never returns times out", func(t *testing.T) {
		t.Parallel()
		block := make(chan struct{})
		defer close(block)
		s := newDirectPath(&recordingPublisher{fn: func(*message.Message) error { <-block; return nil }}, nil, 50*time.Millisecond, 8)
		if err := send(t, s, context.Background()); err == nil || !strings.Contains(err.Error(), "PublishTimeout") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("shutdown while in flight is errAborted", func(t *testing.T) {
		t.Parallel()
		block := make(chan struct{})
		defer close(block)
		ctx, cancel := context.WithCancel(context.Background())
		s := newDirectPath(&recordingPublisher{fn: func(*message.Message) error { cancel(); <-block; return nil }}, nil, time.Minute, 8)
		if err := send(t, s, ctx); !errors.Is(err, errAborted) {
			t.Fatalf("err %v", err)
		}
	})
}

// publishVia publishes row through path as the scheduler does and returns
// the outcome.
func publishVia(t *testing.T, path publishPath, hardCtx context.Context, row *outboxdriver.EventRow) error {
	t.Helper()
	msg, err := path.message(row)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	if err := path.begin(hardCtx, row.Topic, msg, func(err error) { done <- err }); err != nil {
		return err
	}
	return <-done
}

// asyncPublisher implements AsyncPublisher; result decides each outcome.
type asyncPublisher struct {
	recordingPublisher
	startErr error
	result   func() error // nil: block until ctx ends
}

func (p *asyncPublisher) PublishAsync(topic string, msg *message.Message) (func(context.Context) error, error) {
	if p.startErr != nil {
		return nil, p.startErr
	}
	p.mu.Lock()
	p.topics = append(p.topics, topic)
	p.mu.Unlock()
	return func(ctx context.Context) error {
		if p.result == nil {
			<-ctx.Done()
			return ctx.Err()
		}
		return p.result()
	}, nil
}

func TestAsyncPath(t *testing.T) {
	t.Parallel()
	row := &outboxdriver.EventRow{ID: "0194a1c2-0000-7000-8000-000000000003", Type: "t", Topic: "invoices", Payload: []byte("p"), Headers: []byte("{}")}
	send := func(t *testing.T, p *asyncPublisher, ctx context.Context, timeout time.Duration) error {
		t.Helper()
		s := newAsyncPath(p, timeout, 8)
		defer s.close()
		return publishVia(t, s, ctx, row)
	}
	for name, c := range map[string]struct {
		pub     *asyncPublisher
		ctx     func() context.Context
		want    string // "" means success
		aborted bool
	}{
		"acknowledged":   {pub: &asyncPublisher{result: func() error { return nil }}},
		"refused":        {pub: &asyncPublisher{result: func() error { return errors.New("nats: maximum messages exceeded\nstack") }}, want: "nats: maximum messages exceeded"},
		"not sent":       {pub: &asyncPublisher{startErr: errors.New("nats: invalid subject")}, want: "nats: invalid subject"},
		"no ack in time": {pub: &asyncPublisher{}, want: "PublishTimeout"},
		"panic":          {pub: &asyncPublisher{result: func() error { panic("boom") }}, want: "boom"},
		"relay stopping": {pub: &asyncPublisher{}, ctx: func() context.Context { ctx, cancel := context.WithCancel(context.Background()); cancel(); return ctx }, aborted: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if c.ctx != nil {
				ctx = c.ctx()
			}
			err := send(t, c.pub, ctx, 50*time.Millisecond)
			switch {
			case c.aborted:
				if !errors.Is(err, errAborted) {
					t.Fatalf("err %v, want errAborted", err)
				}
			case c.want == "":
				if err != nil || len(c.pub.topics) != 1 || c.pub.topics[0] != "invoices" {
					t.Fatalf("err %v, topics %v", err, c.pub.topics)
				}
			case err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n"):
				t.Fatalf("err %v, want one line containing %q", err, c.want)
			}
		})
	}
}

func TestDirectPathPicksAsyncPublisherWithoutMiddlewares(t *testing.T) {
	t.Parallel()
	noop := func(h message.HandlerFunc) message.HandlerFunc { return h }
	for _, c := range []struct {
		pub         message.Publisher
		middlewares []message.HandlerMiddleware
		want        string
	}{
		{&asyncPublisher{}, nil, "*outbox.asyncPath"},
		{&asyncPublisher{}, []message.HandlerMiddleware{noop}, "*outbox.directPath"},
		{&recordingPublisher{}, nil, "*outbox.directPath"},
	} {
		r := &Relay{publisher: c.pub, cfg: RelayConfig{Publish: PublishDirect, Middlewares: c.middlewares}.withDefaults()}
		s, stop, err := r.startPublishing(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		stop(context.Background())
		if got := fmt.Sprintf("%T", s); got != c.want {
			t.Errorf("%T with %d middlewares: sender %s, want %s", c.pub, len(c.middlewares), got, c.want)
		}
	}
}

func TestEnvelopeRefusesInvalidUTF8(t *testing.T) {
	t.Parallel()
	for name, row := range map[string]*outboxdriver.EventRow{
		"key":   {ID: "0194a1c2-0000-7000-8000-000000000004", Type: "t", Topic: "t", Key: "a\xffb", Payload: []byte("p"), Headers: []byte("{}")},
		"type":  {ID: "0194a1c2-0000-7000-8000-000000000004", Type: "t\xfe", Topic: "t", Payload: []byte("p"), Headers: []byte("{}")},
		"topic": {ID: "0194a1c2-0000-7000-8000-000000000004", Type: "t", Topic: "t\xff", Payload: []byte("p"), Headers: []byte("{}")},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := envelope(row); err == nil || !strings.Contains(err.Error(), "UTF-8") {
				t.Fatalf("envelope: %v, want an error naming UTF-8 (the JSON envelope would alter the value)", err)
			}
			if _, err := eventMessage(row); err != nil {
				t.Fatalf("the direct path's message: %v, want it built unchanged", err)
			}
		})
	}
}

// TestPoolWakesOneIdleGoroutinePerJob: two jobs submitted back to back
// while one goroutine is idle must not both count on it. Before the fix the
// second job stayed queued behind the first, which blocks here, until the
// first returned (in the relay: until a publish timed out).
func TestPoolWakesOneIdleGoroutinePerJob(t *testing.T) {
	for round := 0; round < 50; round++ {
		p := newPool(2)
		attempt := func() *attempt { return newAttempt(context.Background(), time.Minute, func(error) {}) }
		warm := make(chan struct{})
		p.submit(attempt(), func() { close(warm) })
		<-warm
		for idle := 0; idle != 1; {
			p.mu.Lock()
			idle = p.idle
			p.mu.Unlock()
			runtime.Gosched()
		}
		block, ran := make(chan struct{}), make(chan struct{})
		p.submit(attempt(), func() { <-block })
		p.submit(attempt(), func() { close(ran) })
		select {
		case <-ran:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the second job waited behind the first, blocked one", round)
		}
		close(block)
		p.close()
	}
}

// TestAttemptContext: the context a wait gets ends with the attempt, also
// for contexts derived from it, and carries the relay context's values.
func TestAttemptContext(t *testing.T) {
	type key struct{}
	hard, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	defer cancel()
	outcome := make(chan error, 1)
	a := newAttempt(hard, 50*time.Millisecond, func(err error) { outcome <- err })
	ctx := a.context()
	if ctx.Value(key{}) != "v" || ctx.Err() != nil {
		t.Fatalf("fresh attempt context: value %v, err %v", ctx.Value(key{}), ctx.Err())
	}
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > 50*time.Millisecond {
		t.Fatalf("deadline %v %v, want within the PublishTimeout", d, ok)
	}
	derived, stopDerived := context.WithCancel(ctx)
	defer stopDerived()
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { close(stopped) })
	kept := context.AfterFunc(ctx, func() { t.Error("a stopped AfterFunc ran") })
	if !kept() {
		t.Fatal("stop of a pending AfterFunc returned false")
	}
	if err := <-outcome; err == nil || !strings.Contains(err.Error(), "PublishTimeout") {
		t.Fatalf("outcome %v, want the timeout", err)
	}
	<-derived.Done()
	<-stopped
	if stop() {
		t.Fatal("stop after the AfterFunc ran returned true")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(derived.Err(), context.DeadlineExceeded) {
		t.Fatalf("errs %v, %v, want DeadlineExceeded", ctx.Err(), derived.Err())
	}

	aborted := newAttempt(hard, time.Minute, func(error) {})
	cancel()
	<-aborted.context().Done()
	if !errors.Is(aborted.context().Err(), context.Canceled) {
		t.Fatalf("aborted attempt's context err %v, want Canceled", aborted.context().Err())
	}
}
