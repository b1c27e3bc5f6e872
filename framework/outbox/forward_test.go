package outbox

import (
	"context"
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
