package nats_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	outboxnats "github.com/outboxkit/outboxkit/brokers/nats"
	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxbroker"
	"github.com/outboxkit/outboxkit/framework/outboxtest"
)

type bundle struct {
	cfg    outboxnats.Config
	stream string
	topic  string
	js     nats.JetStreamContext
}

// setup creates a fresh memory stream whose only subject is the test's topic.
func setup(t *testing.T) *bundle {
	t.Helper()
	outboxtest.RequireService(t, outboxtest.NATS)
	name := outboxtest.UniqueName("nt")
	b := &bundle{
		cfg:    outboxnats.Config{URL: outboxtest.NATSURL(), Durable: "test"},
		stream: name,
		topic:  "outboxkit.test." + name,
	}
	ctx := context.Background()
	if err := outboxnats.EnsureStream(ctx, b.cfg, outboxnats.StreamConfig{Name: name, Subjects: []string{b.topic}, MemoryStorage: true}); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	nc, err := nats.Connect(outboxtest.NATSURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	b.js, err = nc.JetStream()
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	t.Cleanup(func() {
		_ = b.js.DeleteStream(name)
		nc.Close()
	})
	return b
}

func eventMessage(i int, key string) *message.Message {
	id := fmt.Sprintf("00000000-0000-7000-8000-%012d", i)
	msg := message.NewMessage(id, []byte(fmt.Sprintf(`{"n":%d,"bin":"\u0000\u00ff"}`, i)))
	msg.Metadata.Set(outbox.MetadataEventID, id)
	msg.Metadata.Set(outbox.MetadataEventType, "invoice.issued")
	msg.Metadata.Set(outbox.MetadataKey, key)
	msg.Metadata.Set(outbox.MetadataCreatedAt, "2024-01-02T03:04:05.000000006Z")
	msg.Metadata.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	return msg
}

// subscribe opens a subscriber of cfg on topic; the test closes it.
func subscribe(t *testing.T, cfg outboxnats.Config, topic string) <-chan *message.Message {
	t.Helper()
	sub, err := outboxnats.NewSubscriber(cfg)
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); _ = sub.Close() })
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return ch
}

func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("no message within 20s")
	}
	return nil
}

func TestPublishSubscribe(t *testing.T) {
	t.Parallel()
	b := setup(t)

	pub, err := outboxnats.NewPublisher(b.cfg)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	defer pub.Close()

	const n = 25
	var sent []*message.Message
	for i := range n {
		m := eventMessage(i, fmt.Sprintf("key-%d", i%3))
		sent = append(sent, m)
		if err := pub.Publish(b.topic, m); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}

	sub, err := outboxnats.NewSubscriber(b.cfg)
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub.Subscribe(ctx, b.topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	for i := range n {
		got := receive(t, ch)
		want := sent[i]
		if got.UUID != want.UUID {
			t.Fatalf("message %d: UUID %q, want %q (stream order)", i, got.UUID, want.UUID)
		}
		if string(got.Payload) != string(want.Payload) {
			t.Fatalf("message %d: payload %q, want %q", i, got.Payload, want.Payload)
		}
		for k, v := range want.Metadata {
			if got.Metadata.Get(k) != v {
				t.Fatalf("message %d: metadata %s = %q, want %q (all: %v)", i, k, got.Metadata.Get(k), v, got.Metadata)
			}
		}
		got.Ack()
	}

	// The raw stream message carries the event id in the native dedup slot.
	raw, err := b.js.GetMsg(b.stream, 1)
	if err != nil {
		t.Fatalf("GetMsg: %v", err)
	}
	if got := raw.Header.Get(nats.MsgIdHdr); got != sent[0].UUID {
		t.Fatalf("Nats-Msg-Id = %q, want %q", got, sent[0].UUID)
	}

	t.Run("DurableConsumerSurvivesClose", func(t *testing.T) {
		name := outboxnats.ConsumerName("test", b.topic)
		ci, err := b.js.ConsumerInfo(b.stream, name)
		if err != nil {
			t.Fatalf("ConsumerInfo: %v", err)
		}
		if ci.Config.Durable != name || ci.Config.AckPolicy != nats.AckExplicitPolicy || ci.Config.MaxAckPending != 1 {
			t.Fatalf("consumer config = durable %q ack %v max_ack_pending %d", ci.Config.Durable, ci.Config.AckPolicy, ci.Config.MaxAckPending)
		}
		// Acks travel asynchronously (the subscriber's goroutine sends them
		// after Ack returns): wait until the server holds them all, or the
		// last one may be lost at Close and redelivered after AckWait.
		deadline := time.Now().Add(20 * time.Second)
		for ci.NumAckPending > 0 || ci.AckFloor.Stream < n {
			if time.Now().After(deadline) {
				t.Fatalf("acks not recorded: %d pending, ack floor %d", ci.NumAckPending, ci.AckFloor.Stream)
			}
			time.Sleep(10 * time.Millisecond)
			if ci, err = b.js.ConsumerInfo(b.stream, name); err != nil {
				t.Fatalf("ConsumerInfo: %v", err)
			}
		}
		cancel()
		if err := sub.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, err := b.js.ConsumerInfo(b.stream, name); err != nil {
			t.Fatalf("durable consumer gone after Close: %v", err)
		}
	})

	t.Run("ResumesAfterRestart", func(t *testing.T) {
		// One more message while no subscriber runs: a new subscriber with
		// the same durable gets it, and only it (the earlier ones were acked).
		extra := eventMessage(n, "key-x")
		if err := pub.Publish(b.topic, extra); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		got := receive(t, subscribe(t, b.cfg, b.topic))
		got.Ack()
		if got.UUID != extra.UUID {
			t.Fatalf("after restart got %q, want %q", got.UUID, extra.UUID)
		}
	})
}

func TestNativeDedup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pub, err := outboxnats.NewPublisher(b.cfg)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	defer pub.Close()

	m := eventMessage(1, "k")
	for i := range 3 {
		// A republish is a new Watermill message with the same UUID, as the
		// relay produces after a crash.
		dup := message.NewMessage(m.UUID, m.Payload)
		dup.Metadata = m.Metadata
		if err := pub.Publish(b.topic, dup); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	if err := pub.Publish(b.topic, eventMessage(2, "k")); err != nil {
		t.Fatalf("Publish other: %v", err)
	}
	info, err := b.js.StreamInfo(b.stream)
	if err != nil {
		t.Fatalf("StreamInfo: %v", err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want 2 (3 copies of one id + 1 other)", info.State.Msgs)
	}
	if info.Config.Duplicates != outboxnats.DefaultDuplicateWindow {
		t.Fatalf("duplicate window %s, want %s", info.Config.Duplicates, outboxnats.DefaultDuplicateWindow)
	}

	// A resend the receiver must get (outbox_resend 1, then 2) is stored,
	// on the synchronous and the async path; each resend republished
	// (a relay's crash) is dropped again.
	for _, resend := range []string{"1", "1", "2", "2"} {
		dup := message.NewMessage(m.UUID, m.Payload)
		dup.Metadata = maps.Clone(m.Metadata)
		dup.Metadata.Set(outbox.MetadataResend, resend)
		if resend == "1" {
			if err := pub.Publish(b.topic, dup); err != nil {
				t.Fatalf("Publish resend %s: %v", resend, err)
			}
			continue
		}
		wait, err := pub.PublishAsync(b.topic, dup)
		if err == nil {
			err = wait(context.Background())
		}
		if err != nil {
			t.Fatalf("PublishAsync resend %s: %v", resend, err)
		}
	}
	if info, err = b.js.StreamInfo(b.stream); err != nil {
		t.Fatalf("StreamInfo: %v", err)
	}
	if info.State.Msgs != 4 {
		t.Fatalf("stream holds %d messages, want 4 (+ resends 1 and 2, each sent twice)", info.State.Msgs)
	}
	ch := subscribe(t, b.cfg, b.topic)
	var got []string
	for range 4 {
		r := receive(t, ch)
		r.Ack()
		got = append(got, r.UUID+" "+r.Metadata.Get(outbox.MetadataResend))
	}
	want := []string{m.UUID + " ", eventMessage(2, "k").UUID + " ", m.UUID + " 1", m.UUID + " 2"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("consumer got %q, want %q", got, want)
	}
}

func TestNackRedelivers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.AckWait = time.Second
	pub, err := outboxnats.NewPublisher(b.cfg)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	defer pub.Close()
	for i := range 2 {
		if err := pub.Publish(b.topic, eventMessage(i, "k")); err != nil {
			t.Fatal(err)
		}
	}
	ch := subscribe(t, b.cfg, b.topic)
	first := receive(t, ch)
	first.Nack()
	// With MaxAckPending 1 the nacked message comes back before the next.
	again := receive(t, ch)
	if again.UUID != first.UUID {
		t.Fatalf("after Nack got %q, want redelivery of %q", again.UUID, first.UUID)
	}
	again.Ack()
	next := receive(t, ch)
	next.Ack()
	if next.UUID != eventMessage(1, "k").UUID {
		t.Fatalf("then got %q, want the second message", next.UUID)
	}
}

func TestBuiltConfig(t *testing.T) {
	t.Parallel()
	pc := outboxnats.Config{}.PublisherConfig()
	if pc.JetStream.TrackMsgId {
		t.Error("publisher TrackMsgId is on: it would replace the marshaler's Nats-Msg-Id by the UUID and drop resends")
	}
	for md, want := range map[string]string{"": "ev-1", "1": "ev-1/resend-1", "12": "ev-1/resend-12", "0": "ev-1", "x1": "ev-1", "1234567890": "ev-1"} {
		msg := message.NewMessage("ev-1", nil)
		msg.Metadata.Set(nats.MsgIdHdr, "hostile")
		if md != "" {
			msg.Metadata.Set(outbox.MetadataResend, md)
		}
		nm, err := pc.Marshaler.Marshal("orders", msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := nm.Header.Get(nats.MsgIdHdr); got != want {
			t.Errorf("outbox_resend %q: Nats-Msg-Id %q, want %q", md, got, want)
		}
	}
	if pc.JetStream.AutoProvision {
		t.Error("publisher AutoProvision is on (a StreamInfo round trip per Publish)")
	}
	if pc.JetStream.Disabled {
		t.Error("publisher JetStream disabled (core NATS publishes are not acknowledged)")
	}
	if pc.JetStream.AckAsync {
		t.Error("AckAsync on")
	}
	sc := outboxnats.Config{Durable: "billing"}.SubscriberConfig()
	if got := sc.JetStream.CalculateDurableName("orders.created"); got != "billing_orders_created" {
		t.Errorf("durable name %q", got)
	}
	if sc.JetStream.AutoProvision || sc.JetStream.AckAsync || sc.AckWaitTimeout != 30*time.Second {
		t.Errorf("subscriber config %+v", sc.JetStream)
	}
	if len(sc.JetStream.SubscribeOptions) != 2 {
		t.Errorf("subscribe options: %d, want ManualAck and AckExplicit", len(sc.JetStream.SubscribeOptions))
	}
}

func TestValidateSubject(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"orders", "orders.created", "a-b_c.D9", "invoice:v1"} {
		if err := outboxnats.ValidateSubject(ok); err != nil {
			t.Errorf("ValidateSubject(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "a.*", "a.>", ".a", "a.", "a..b", "a\tb", "x*y"} {
		if err := outboxnats.ValidateSubject(bad); !errors.Is(err, outboxnats.ErrInvalidSubject) {
			t.Errorf("ValidateSubject(%q) = %v, want ErrInvalidSubject", bad, err)
		}
	}
	t.Run("PublishRejects", func(t *testing.T) {
		outboxtest.RequireService(t, outboxtest.NATS)
		pub, err := outboxnats.NewPublisher(outboxnats.Config{URL: outboxtest.NATSURL()})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		if err := pub.Publish("orders.*", eventMessage(1, "k")); !errors.Is(err, outboxnats.ErrInvalidSubject) {
			t.Fatalf("Publish wildcard = %v", err)
		}
	})
}

func TestPublishWithoutStreamFails(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.NATS)
	pub, err := outboxnats.NewPublisher(outboxnats.Config{URL: outboxtest.NATSURL(), PublishTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	topic := "outboxkit.nostream." + outboxtest.UniqueName("x")
	if err := pub.Publish(topic, eventMessage(1, "k")); err == nil {
		t.Fatal("publish to a subject no stream stores succeeded; want an error (no JetStream ack)")
	}
}

func TestOpenURL(t *testing.T) {
	t.Parallel()
	outboxtest.RequireService(t, outboxtest.NATS)
	ctx := context.Background()
	stream := outboxtest.UniqueName("nu")
	topic := "outboxkit.url." + stream
	raw := outboxtest.NATSURL() + "?stream=" + stream + "&subjects=" + topic + "&ensure_stream=true&storage=memory&group=urltest"
	b, err := outboxbroker.Open(ctx, raw, outboxbroker.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	if !b.Features.NativeDedup || !b.Features.Subscriber {
		t.Fatalf("features %+v", b.Features)
	}
	nc, err := nats.Connect(outboxtest.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	defer js.DeleteStream(stream)

	m := eventMessage(7, "k")
	for range 2 {
		if err := b.Publisher.Publish(topic, m); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || info.Config.Storage != nats.MemoryStorage {
		t.Fatalf("stream msgs=%d storage=%v", info.State.Msgs, info.Config.Storage)
	}
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := b.Subscriber.Subscribe(subCtx, topic)
	if err != nil {
		t.Fatal(err)
	}
	got := receive(t, ch)
	got.Ack()
	if got.UUID != m.UUID {
		t.Fatalf("got %q", got.UUID)
	}
	if _, err := js.ConsumerInfo(stream, outboxnats.ConsumerName("urltest", topic)); err != nil {
		t.Fatalf("consumer from group=urltest: %v", err)
	}

	t.Run("BadParam", func(t *testing.T) {
		for param, q := range map[string]string{
			"ack_wait":      "ack_wait=soon",
			"bogus":         "bogus=1",
			"ensure_stream": "ensure_stream=true",
			"storage":       "storage=tape",
			"subjects":      "stream=S&subjects=a.b",
			"duplicates":    "stream=S&duplicates=5m",
			"stream":        "stream=" + outboxtest.UniqueName("missing"),
		} {
			_, err := outboxbroker.Open(ctx, outboxtest.NATSURL()+"?"+q, outboxbroker.Options{})
			if _, werr := outboxbroker.Open(ctx, "nats://u:s3cret@127.0.0.1:4222?"+q, outboxbroker.Options{}); werr != nil && strings.Contains(werr.Error(), "s3cret") {
				t.Errorf("%s: error leaks the password: %v", q, werr)
			}
			var pe *outboxbroker.ParamError
			if !errors.As(err, &pe) || pe.Param != param {
				t.Errorf("%s: err = %v, want ParamError naming %q", q, err, param)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%s: error leaks the password: %v", q, err)
			}
		}
	})
}

// TestPublishAsync checks the relay's async path stores what Publish stores:
// same subject, UUID, payload and metadata, deduplicated by event id; and
// that a subject no stream stores fails at wait, with the subject named.
func TestPublishAsync(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pub, err := outboxnats.NewPublisher(b.cfg)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	defer pub.Close()
	var _ outbox.AsyncPublisher = pub

	m := eventMessage(1, "k")
	for i := range 2 {
		dup := message.NewMessage(m.UUID, m.Payload)
		dup.Metadata = m.Metadata
		wait, err := pub.PublishAsync(b.topic, dup)
		if err != nil {
			t.Fatalf("PublishAsync %d: %v", i, err)
		}
		if err := wait(context.Background()); err != nil {
			t.Fatalf("wait %d: %v", i, err)
		}
	}
	info, err := b.js.StreamInfo(b.stream)
	if err != nil {
		t.Fatalf("StreamInfo: %v", err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1 (2 copies of one id)", info.State.Msgs)
	}
	got := receive(t, subscribe(t, b.cfg, b.topic))
	got.Ack()
	if got.UUID != m.UUID || string(got.Payload) != string(m.Payload) {
		t.Fatalf("received %s %q, want %s %q", got.UUID, got.Payload, m.UUID, m.Payload)
	}
	for k, v := range m.Metadata {
		if got.Metadata.Get(k) != v {
			t.Fatalf("metadata %s = %q, want %q", k, got.Metadata.Get(k), v)
		}
	}

	unstored := "outboxkit.nostream." + outboxtest.UniqueName("x")
	wait, err := pub.PublishAsync(unstored, eventMessage(2, "k"))
	if err != nil {
		t.Fatalf("PublishAsync: %v", err)
	}
	if err := wait(context.Background()); err == nil || !strings.Contains(err.Error(), unstored) {
		t.Fatalf("publish to a subject no stream stores: %v", err)
	}
	if _, err := pub.PublishAsync("bad subject", eventMessage(3, "k")); err == nil {
		t.Fatal("invalid subject accepted")
	}
}
