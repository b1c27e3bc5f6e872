package mysql

import (
	"database/sql"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
	"github.com/outboxkit/outboxkit/framework/outboxwsql"
)

// WatermillSQLSchema is a watermill-sql v3 SchemaAdapter that writes into
// outboxkit's outbox table: a service that publishes with
// forwarder.NewPublisher(sql.NewPublisher(tx, sql.PublisherConfig{
// SchemaAdapter: sql.DefaultMySQLSchema{}}, ...), ...) changes only the
// SchemaAdapter, and its messages become outbox events in tx, which
// outboxkit's relay publishes:
//
//	sql.NewPublisher(tx, sql.PublisherConfig{SchemaAdapter: mysql.WatermillSQLSchema{
//		ForwarderTopic: forwarderTopic, KeyMetadata: "partition_key"}}, logger)
//
// A message published to ForwarderTopic is a forwarder envelope: the event
// is the message inside it, with the envelope's destination topic. Any
// other message is an event of the topic it was published to. The message
// UUID is the event id (it must be a UUID), its payload the event payload
// and its metadata the event headers (names starting with "outbox_" are
// reserved); KeyMetadata and TypeMetadata name the metadata fields that
// become the key and the type. Each message is validated as Insert
// validates an event: an invalid one fails Publish with the
// *outbox.EventError Insert returns, before anything is written. The
// statement is the driver's own insert (a message UUID written twice is
// one event). Publish at most 1000 messages, and 4 MiB of payloads, per
// call: more would need a second statement.
//
// The adapter only writes. Migrate the table with outbox.Outbox.Migrate or
// `outbox migrate up` (SchemaInitializingQueries returns none), and relay it
// with outbox.NewRelay: a watermill-sql Subscriber on this adapter reads
// nothing and logs outboxwsql.ErrWriterOnly.
type WatermillSQLSchema struct {
	// Config is the driver configuration of the outbox table. Zero means
	// DefaultTable in the connection's database.
	Config Config

	// MaxPayloadBytes is outbox.Config.MaxPayloadBytes for the events
	// written. Zero means outbox.DefaultMaxPayloadBytes.
	MaxPayloadBytes int

	// ForwarderTopic is the forwarder.PublisherConfig.ForwarderTopic the
	// writer wraps messages for. Zero means "forwarder_topic", the
	// forwarder's default.
	ForwarderTopic string

	// KeyMetadata names the metadata field holding the event key. Zero
	// means events have no key: no order among them.
	KeyMetadata string

	// TypeMetadata names the metadata field holding the event type. Zero,
	// or a message without the field, means DefaultType.
	TypeMetadata string

	// DefaultType is the type of events without TypeMetadata. Zero means
	// the event's topic.
	DefaultType string
}

var _ wsql.SchemaAdapter = WatermillSQLSchema{}

// InsertQuery implements watermill-sql's SchemaAdapter: the driver's insert
// of the messages' events.
func (s WatermillSQLSchema) InsertQuery(topic string, msgs message.Messages) (wsql.Query, error) {
	ob, err := outboxwsql.OutboxFor(s.Config, s.MaxPayloadBytes, func(db *sql.DB) (outboxdriver.Driver, error) {
		return New(db, s.Config)
	})
	if err != nil {
		return wsql.Query{}, err
	}
	w := outboxwsql.Writer{Outbox: ob, ForwarderTopic: s.ForwarderTopic, KeyMetadata: s.KeyMetadata,
		TypeMetadata: s.TypeMetadata, DefaultType: s.DefaultType}
	query, args, err := w.InsertQuery(topic, msgs)
	return wsql.Query{Query: query, Args: args}, err
}

// SelectQuery implements watermill-sql's SchemaAdapter. It returns a query
// whose row UnmarshalMessage refuses: the adapter only writes.
func (WatermillSQLSchema) SelectQuery(string, string, wsql.OffsetsAdapter) wsql.Query {
	return wsql.Query{Query: outboxwsql.WriterOnlyQuery}
}

// UnmarshalMessage implements watermill-sql's SchemaAdapter; it returns
// outboxwsql.ErrWriterOnly.
func (WatermillSQLSchema) UnmarshalMessage(wsql.Scanner) (wsql.Row, error) {
	return wsql.Row{}, outboxwsql.ErrWriterOnly
}

// SchemaInitializingQueries implements watermill-sql's SchemaAdapter; it
// returns none: outbox.Outbox.Migrate creates the table.
func (WatermillSQLSchema) SchemaInitializingQueries(string) []wsql.Query { return nil }

// SubscribeIsolationLevel implements watermill-sql's SchemaAdapter.
func (WatermillSQLSchema) SubscribeIsolationLevel() sql.IsolationLevel { return sql.LevelReadCommitted }
