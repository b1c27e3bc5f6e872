package outbox

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// Event is one message to publish, written to the outbox inside the
// transaction that changes the business data it describes.
type Event struct {
	// ID identifies the event forever: it is the Watermill message UUID and
	// the broker's dedup id on every (re)delivery. Leave it empty and Insert
	// generates a UUIDv7; set it to make the insert idempotent by your own id
	// (it must then be a valid UUID).
	ID string

	// Type names what happened, e.g. "care.invoice.issued". Required.
	Type string

	// Topic is the broker destination (Kafka topic, NATS subject, AMQP
	// routing key, Redis stream). Required.
	Topic string

	// Key is the ordering and partition key, typically an aggregate id.
	// Events with the same non-empty key reach the broker in commit order;
	// events with an empty key are unordered and flow fully in parallel.
	Key string

	// Payload is the message body, opaque to the outbox. See NewJSONEvent.
	Payload []byte

	// Headers are copied to the message metadata. Keys starting with
	// "outbox_" are reserved. A W3C traceparent is added by the
	// Config.Propagate hook when set.
	Headers map[string]string

	// CreatedAt is set by Insert (UTC); any value given is ignored.
	CreatedAt time.Time

	// AwaitAck, when set, makes the event wait for a business
	// acknowledgment from its receiver after the broker has it: SUCCESS
	// (Outbox.Acknowledge, or package outboxack's reply handler), a
	// rejection, or silence, after which the relay resends it (see
	// AckPolicy). Nil means the event is done once the broker acknowledged
	// it. The driver must implement outboxdriver.Acknowledger (all of
	// outboxkit's do).
	AwaitAck *AckPolicy
}

// NewJSONEvent returns an event whose payload is v encoded as JSON, with the
// content-type header set to application/json.
func NewJSONEvent(eventType, topic, key string, v any) (*Event, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("outbox: encode %s payload: %w", eventType, err)
	}
	return &Event{
		Type:    eventType,
		Topic:   topic,
		Key:     key,
		Payload: payload,
		Headers: map[string]string{"content-type": "application/json"},
	}, nil
}

// DecodeJSON decodes the event's JSON payload into v.
func (e *Event) DecodeJSON(v any) error {
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("outbox: decode %s payload of event %s: %w", e.Type, e.ID, err)
	}
	return nil
}

// Status is the delivery state of a stored event.
type Status = outboxdriver.Status

// Event statuses, see outboxdriver for their meaning.
const (
	StatusPending   = outboxdriver.StatusPending
	StatusDelivered = outboxdriver.StatusDelivered
	StatusDead      = outboxdriver.StatusDead
)

// StoredEvent is an event together with its delivery state, as returned by
// the admin API.
type StoredEvent struct {
	Event
	// Seq is the insertion sequence number (the List cursor).
	Seq           int64
	Status        Status
	Attempts      int
	LastError     string
	NextAttemptAt time.Time
	DeliveredAt   *time.Time
	LockedBy      string
	LockedUntil   *time.Time
	// Ack is the business acknowledgment state of an event inserted with
	// AwaitAck (nil for the others). Event.AwaitAck is left nil: the policy
	// is Ack.Policy.
	Ack *AckState
}

func storedFromRow(r *outboxdriver.EventRow) (*StoredEvent, error) {
	s := &StoredEvent{
		Event: Event{
			ID: r.ID, Type: r.Type, Topic: r.Topic, Key: r.Key,
			Payload: r.Payload, CreatedAt: r.CreatedAt,
		},
		Seq: r.Seq, Status: r.Status, Attempts: r.Attempts, LastError: r.LastError,
		NextAttemptAt: r.NextAttemptAt, DeliveredAt: r.DeliveredAt,
		LockedBy: r.LockedBy, LockedUntil: r.LockedUntil,
	}
	h, err := decodeHeaders(r.Headers)
	if err != nil {
		return s, err
	}
	s.Headers = h
	return s, nil
}

func decodeHeaders(b []byte) (map[string]string, error) {
	if len(b) == 0 || string(b) == "{}" { // most events: skip the decoder
		return make(map[string]string, 4), nil
	}
	h := map[string]string{}
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("headers are not a JSON object of strings: %w", err)
	}
	return h, nil
}
