// Package outboxwsql is the dialect-independent half of the drivers'
// watermill-sql v3 schema adapters (postgres.WatermillSQLSchema,
// mysql.WatermillSQLSchema): it turns the messages a watermill-sql Publisher
// hands to its SchemaAdapter into outbox events, validates them exactly as
// outbox.Insert does, and returns the one statement the driver's insert
// runs, for the Publisher to execute in the caller's transaction.
//
// It imports no watermill-sql package, so the core module does not depend
// on watermill-sql; the drivers, which do, wrap Writer in the SchemaAdapter
// interface. Application code uses the drivers' types, not this package.
package outboxwsql

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// DefaultForwarderTopic is the ForwarderTopic a zero Writer unwraps: the
// default of Watermill's forwarder.PublisherConfig.ForwarderTopic.
const DefaultForwarderTopic = "forwarder_topic"

// ErrWriterOnly is returned when a watermill-sql Subscriber reads through
// an outboxkit schema adapter: the adapters only write, and outboxkit's
// relay (outbox.NewRelay) reads the table.
var ErrWriterOnly = errors.New("outbox: the outboxkit watermill-sql SchemaAdapter only writes events; " +
	"read and publish them with outboxkit's relay (outbox.NewRelay or `outbox relay`), not a watermill-sql Subscriber")

// WriterOnlyQuery is what the adapters' SelectQuery returns: a query that
// yields one row, which their UnmarshalMessage refuses with ErrWriterOnly,
// so that a watermill-sql Subscriber logs why it cannot read (SelectQuery
// itself cannot return an error).
const WriterOnlyQuery = "SELECT 1"

// noopQuery is the statement for a Publish call without messages.
const noopQuery = "SELECT 1"

// Writer converts messages published through watermill-sql into outbox
// events. The zero value (with Outbox set) writes every message published
// to the forwarder topic "forwarder_topic" as the event its envelope
// carries and every other message as an event of the topic it was
// published to, unkeyed, with the topic as its type.
type Writer struct {
	// Outbox validates and inserts the events. Its driver must be built on
	// Recorder() (see OutboxFor): the insert is recorded, not run.
	Outbox *outbox.Outbox

	// ForwarderTopic is the forwarder.PublisherConfig.ForwarderTopic of the
	// forwarder.NewPublisher wrapping the watermill-sql Publisher: a message
	// published to it is a forwarder envelope, and the event is the message
	// inside, with the envelope's destination topic. Zero means
	// DefaultForwarderTopic, the forwarder's own default.
	ForwarderTopic string

	// KeyMetadata names the message metadata field whose value becomes the
	// event key (per-key order, and the partition key of the brokers'
	// modules). Zero means events have no key (no order among them).
	KeyMetadata string

	// TypeMetadata names the message metadata field whose value becomes the
	// event type. Zero, or a message without that field, means DefaultType.
	TypeMetadata string

	// DefaultType is the event type of messages without TypeMetadata. Zero
	// means the event's topic.
	DefaultType string
}

// forwarderEnvelope is the JSON envelope of Watermill's forwarder
// (components/forwarder), which does not export it.
type forwarderEnvelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

// InsertQuery returns the statement that inserts the events of msgs,
// published to topic, as Writer.Outbox.Insert would run it in the caller's
// transaction, after the same validation: an invalid message returns the
// *outbox.EventError Insert returns (Index is the message's position), and
// nothing is to be run. A call without messages returns a statement that
// does nothing.
func (w Writer) InsertQuery(topic string, msgs []*message.Message) (query string, args []any, err error) {
	if len(msgs) == 0 {
		return noopQuery, nil, nil
	}
	events := make([]*outbox.Event, len(msgs))
	for i, m := range msgs {
		if events[i], err = w.event(i, topic, m); err != nil {
			return "", nil, err
		}
	}
	// Insert's Propagate hook sees the first message's context (the
	// messages of one Publish call normally share the request's); the
	// statement is recorded, so its cancellation must not matter.
	stmts, err := record(context.WithoutCancel(msgs[0].Context()), func(ctx context.Context, tx *sql.Tx) error {
		return w.Outbox.Insert(ctx, tx, events...)
	})
	if err != nil {
		return "", nil, err
	}
	if len(stmts) != 1 {
		return "", nil, fmt.Errorf("outbox: the %d messages of one Publish call need %d INSERT statements, and watermill-sql runs one: publish fewer messages per call",
			len(msgs), len(stmts))
	}
	return stmts[0].query, stmts[0].args, nil
}

// event turns the message at index i of a Publish call to topic into an
// event.
func (w Writer) event(i int, topic string, m *message.Message) (*outbox.Event, error) {
	if m == nil {
		return nil, &outbox.EventError{Index: i, Field: "Event", Reason: "nil message", Err: outbox.ErrInvalidEvent}
	}
	id, payload, md := m.UUID, []byte(m.Payload), map[string]string(m.Metadata)
	if forwarder := cmp.Or(w.ForwarderTopic, DefaultForwarderTopic); topic == forwarder {
		var env forwarderEnvelope
		err := json.Unmarshal(m.Payload, &env)
		if err == nil && env.DestinationTopic == "" {
			err = errors.New("no destination_topic")
		}
		if err != nil {
			return nil, &outbox.EventError{Index: i, Field: "Payload", Err: outbox.ErrInvalidEvent,
				Reason: fmt.Sprintf("message %q published to the forwarder topic %q is not a Watermill forwarder envelope: %v", m.UUID, forwarder, err)}
		}
		topic, id, payload, md = env.DestinationTopic, env.UUID, env.Payload, env.Metadata
	}
	e := &outbox.Event{ID: id, Topic: topic, Payload: payload, Headers: maps.Clone(md)}
	if w.KeyMetadata != "" {
		e.Key = md[w.KeyMetadata]
	}
	if w.TypeMetadata != "" {
		e.Type = md[w.TypeMetadata]
	}
	e.Type = cmp.Or(e.Type, w.DefaultType, topic)
	return e, nil
}

var outboxes sync.Map // comparable key -> *outbox.Outbox

// OutboxFor returns the Outbox a driver's adapter with the given key (its
// comparable configuration: the same key, the same Outbox) writes through:
// newDriver's driver, built on Recorder(), with MaxPayloadBytes. Adapters
// are values built inline, so the Outbox is built once per configuration
// and kept for the process's life. An invalid configuration returns the
// error of newDriver or outbox.New (wrapping outbox.ErrInvalidConfig).
func OutboxFor[K comparable](key K, maxPayloadBytes int, newDriver func(*sql.DB) (outboxdriver.Driver, error)) (*outbox.Outbox, error) {
	type outboxKey struct {
		key K
		max int
	}
	k := outboxKey{key, maxPayloadBytes}
	if ob, ok := outboxes.Load(k); ok {
		return ob.(*outbox.Outbox), nil
	}
	drv, err := newDriver(Recorder())
	if err != nil {
		return nil, err
	}
	ob, err := outbox.New(drv, outbox.Config{MaxPayloadBytes: maxPayloadBytes})
	if err != nil {
		return nil, err
	}
	actual, _ := outboxes.LoadOrStore(k, ob)
	return actual.(*outbox.Outbox), nil
}
