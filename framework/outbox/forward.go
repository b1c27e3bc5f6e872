package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

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

// envelope turns a claimed row into the forwarder's enveloped message. The
// event id is both the envelope's and the published message's UUID.
func envelope(row *outboxdriver.EventRow) (*message.Message, error) {
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
	b, err := json.Marshal(forwarderEnvelope{DestinationTopic: row.Topic, UUID: row.ID, Payload: row.Payload, Metadata: md})
	if err != nil {
		return nil, err
	}
	return message.NewMessage(row.ID, b), nil
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

// captureError is the first middleware of the forwarder handler.
func captureError(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil {
			if slot, ok := msg.Context().Value(errorSlotKey{}).(*errorSlot); ok {
				slot.mu.Lock()
				slot.err = err
				slot.mu.Unlock()
			}
		}
		return out, err
	}
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
