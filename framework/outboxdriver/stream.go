package outboxdriver

import (
	"context"
	"errors"
	"log/slog"
)

// Streamer is an optional capability of a driver, discovered by the relay
// with a type assertion: instead of claiming batches from the table, the
// relay reads the events from the database's change stream (PostgreSQL
// logical replication: postgres.NewCDC) in commit order, and tells the
// stream how far every event has a recorded fate, so that a relay that
// crashes resumes from there without loss. A driver that implements it is
// relayed in stream mode; its claim protocol, if any, is not used.
//
// A stream delivers each committed event at least once: the events after
// the last confirmed position are delivered again by the next stream
// opened on the same slot. Only one stream of a slot is open at a time
// (EventStreamOpen waits while another holds it: a hot standby).
type Streamer interface {
	// EventStreamOpen opens the change stream, creating its slot if needed.
	// While another stream holds the slot it waits, trying again about
	// every second, until it gets it or ctx ends. An error wrapping
	// ErrStreamUnsupported means the database cannot stream (it is not
	// retried); any other error is retried by the relay.
	EventStreamOpen(ctx context.Context, params *EventStreamOpenParams) (EventStream, error)

	// EventStreamRecord writes the fate of streamed events to their rows:
	// failed attempts and dead events exactly as a claimed batch's, and
	// delivered events as the driver's configuration says (marked
	// delivered, deleted, or, in a driver that offers it, not written at
	// all). The relay confirms a position only after the fate of every
	// event before it is recorded.
	EventStreamRecord(ctx context.Context, params *EventStreamRecordParams) error
}

// EventStream is one open change stream. Next is called from one
// goroutine; Confirm may be called from any.
type EventStream interface {
	// Next blocks until one or more committed transactions with events are
	// available and returns them as one batch (whole transactions, in
	// commit order, about BatchSize events at most unless one transaction
	// is larger). It returns an error when the stream broke or ctx ended;
	// the stream is then unusable.
	Next(ctx context.Context) (*StreamBatch, error)

	// Confirm reports to the database that every event up to and
	// including position pos (a StreamBatch.End) needs no replay: its fate
	// is recorded, or the event is held in the table (EventStreamRecord's
	// Held) where the next stream finds it. The database may then free
	// what it keeps for them. It returns once the report was sent, or with
	// the error that broke the stream. The stream also reports its
	// position periodically, when idle too, so the database does not keep
	// the log of unrelated transactions.
	Confirm(ctx context.Context, pos uint64) error

	// Close ends the stream and frees the slot for a standby.
	Close() error
}

// EventStreamOpenParams are the parameters of Streamer.EventStreamOpen.
type EventStreamOpenParams struct {
	// RelayID names the relay, for logs and the database's view of the
	// connection (application_name).
	RelayID string
	// BatchSize is the number of events a batch aims at.
	BatchSize int
	// Logger receives the stream's operational logs (e.g. waiting as a
	// hot standby); nil discards them.
	Logger *slog.Logger
}

// StreamBatch is a batch of events read from a change stream.
type StreamBatch struct {
	// Rows are the events, in commit order (Seq order within a
	// transaction). A row made pending again by a retry (EventRetry) is
	// streamed again with its stored state. The first batch of a stream
	// also carries the events the table holds for it: those held or
	// failed by an earlier stream, and, when the stream's slot was just
	// created, every pending event committed before it.
	Rows []*EventRow
	// End is the position to confirm once every row's fate is recorded;
	// 0 for a batch read from the table, which needs no confirmation.
	End uint64
}

// EventStreamRecordParams are the parameters of Streamer.EventStreamRecord.
type EventStreamRecordParams struct {
	// Delivered are the ids of events the broker acknowledged.
	Delivered []string
	// Failures are failed attempts (backoff or dead).
	Failures []FailedAttempt
	// Held are the ids of pending events that wait behind a failed event
	// of their key: the driver marks them so that the next stream reads
	// them from the table (the relay then confirms past them).
	Held []string
}

// ErrStreamUnsupported is wrapped by EventStreamOpen's error when the
// database cannot provide a change stream as configured (e.g. PostgreSQL
// without wal_level=logical); the message says how to fix it. The relay
// returns it from Run instead of retrying.
var ErrStreamUnsupported = errors.New("outbox: change stream unsupported by the database")
