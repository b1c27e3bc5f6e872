// Package outboxdriver defines the interface a SQL dialect implements so that
// the outbox core (package outbox) can store, claim and administer events.
//
// The interface is NOT STABLE: it may change in any minor release while the
// project is young. Application code should use package outbox; only driver
// authors (drivers/postgres, drivers/mysql, third-party dialects) depend on
// this package directly.
//
// Every method takes a context and one *Params struct so that parameters can be
// added without breaking implementations. Methods are listed in alphabetical
// order and named noun-then-verb.
package outboxdriver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Status is the lifecycle state of an outbox event as stored in the table.
type Status string

const (
	// StatusPending marks an event that is waiting to be published (never
	// attempted, in flight, or in backoff after a failed attempt).
	StatusPending Status = "pending"
	// StatusDelivered marks an event the broker acknowledged.
	StatusDelivered Status = "delivered"
	// StatusDead marks an event that failed MaxAttempts times or could not be
	// read; it is kept with its last error until retried or purged.
	StatusDead Status = "dead"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	return s == StatusPending || s == StatusDelivered || s == StatusDead
}

// Driver is what a SQL dialect implements: storage, insert and
// administration of events. Implementations must be safe for concurrent use
// by several goroutines and several processes.
//
// A driver also implements exactly one claim protocol, which the relay
// discovers with a type assertion: HeldClaimer (rows stay locked in an open
// transaction while they are published; PostgreSQL, MySQL) or LeasedClaimer
// (rows are leased by a short transaction, then marked; SQLite, or any
// database that cannot keep a transaction open cheaply).
//
// Contract every implementation keeps (the conformance suite and
// outboxdrivertest check it):
//   - EventInsert writes only through the given transaction and takes no lock
//     that a claim or any other relay-side method can hold for longer than
//     one short statement: an application INSERT never waits for a relay.
//   - A claim never skips a committed pending event, whatever order
//     transactions committed in (no offset/high-water-mark scheme).
//   - A claim returns an event with a non-empty key only if no earlier
//     (lower Seq) pending event of the same key is claimed by anyone or
//     waiting for a retry, so per-key order holds with any number of relays.
type Driver interface {
	// DB returns the database handle the driver runs relay and admin queries on.
	DB() *sql.DB

	// EventGet returns one event by id, or ErrNotFound.
	EventGet(ctx context.Context, params *EventGetParams) (*EventRow, error)

	// EventInsert inserts events inside the caller's transaction. An event
	// whose id already exists is skipped (idempotent insert by id) without
	// failing the transaction when its type, topic, key and payload are the
	// stored ones; otherwise it returns an error wrapping ErrDuplicateEvent
	// (see CheckDuplicates). The values it gets were validated by the core
	// (valid UTF-8, no NUL), so no statement fails on them.
	EventInsert(ctx context.Context, params *EventInsertParams) error

	// EventList returns events matching a filter, ordered by Seq, after a cursor.
	EventList(ctx context.Context, params *EventListParams) ([]*EventRow, error)

	// EventPurge deletes at most Limit delivered events older than Before and
	// returns how many it deleted. Pending and dead events are never purged,
	// nor (drivers implementing Acknowledger) events whose acknowledgment is
	// awaiting or unacknowledged.
	EventPurge(ctx context.Context, params *EventPurgeParams) (int64, error)

	// EventRetry makes dead (or, by id, delivered) events pending again with a
	// fresh attempt budget and returns how many rows changed.
	EventRetry(ctx context.Context, params *EventRetryParams) (int64, error)

	// EventStats returns counters for operators.
	EventStats(ctx context.Context, params *EventStatsParams) (*EventStats, error)

	// MigrateStatus reports applied and pending schema migrations.
	MigrateStatus(ctx context.Context, params *MigrateStatusParams) (*MigrateStatus, error)

	// MigrateUp applies every pending schema migration (idempotent, safe to
	// run from several processes at once).
	MigrateUp(ctx context.Context, params *MigrateUpParams) error

	// Name returns the dialect's short name, e.g. "postgres".
	Name() string

	// Table returns the quoted, fully qualified outbox table name, for messages.
	Table() string
}

// LeasedClaimer is the claim protocol of drivers that do not hold a
// transaction open while a batch is published (SQLite: one writer at a
// time). A claim leases rows to a relay for a while in a short transaction;
// the relay extends the lease while it works and records each outcome with
// a statement fenced by the lease, so a relay whose lease expired cannot
// overwrite the outcome recorded by the relay that took over.
type LeasedClaimer interface {
	// EventClaimBatch leases up to Limit ready events to RelayID for Lease and
	// returns them ordered by Seq. Claims serialize between relays.
	EventClaimBatch(ctx context.Context, params *EventClaimBatchParams) ([]*EventRow, error)

	// EventExtendLeases pushes the lease of the given pending events still
	// leased by RelayID to now+Lease and returns how many were extended.
	EventExtendLeases(ctx context.Context, params *EventExtendLeasesParams) (int64, error)

	// EventMarkDelivered records a successful publish of events leased by
	// RelayID and returns how many rows were updated.
	EventMarkDelivered(ctx context.Context, params *EventMarkDeliveredParams) (int64, error)

	// EventMarkFailed records failed attempts (backoff or dead) of events
	// leased by RelayID and returns how many rows were updated.
	EventMarkFailed(ctx context.Context, params *EventMarkFailedParams) (int64, error)

	// EventRelease gives back the leases of events RelayID claimed but did not
	// attempt, leaving attempts untouched.
	EventRelease(ctx context.Context, params *EventReleaseParams) (int64, error)
}

// EventRow is an outbox event as stored, including its delivery state.
type EventRow struct {
	Seq           int64
	ID            string
	Type          string
	Topic         string
	Key           string
	Payload       []byte
	Headers       []byte // JSON object of string values, as stored
	Status        Status
	Attempts      int
	LastError     string
	CreatedAt     time.Time
	NextAttemptAt time.Time
	DeliveredAt   *time.Time
	LockedBy      string
	LockedUntil   *time.Time
}

// InsertEvent is one event to insert; the core has already validated it.
type InsertEvent struct {
	ID        string
	Type      string
	Topic     string
	Key       string
	Payload   []byte
	Headers   []byte // JSON object, never nil
	CreatedAt time.Time
	// Ack, when set, asks for a business acknowledgment: a driver that
	// implements Acknowledger stores its ack row in the same transaction.
	Ack *InsertAck
}

// EventClaimBatchParams are the parameters of LeasedClaimer.EventClaimBatch
// and HeldClaimer.EventClaimHeld.
type EventClaimBatchParams struct {
	RelayID string
	Limit   int
	Lease   time.Duration
	// FromSeq, when positive, is a hint: the claim may start its scan at
	// this Seq and leave pending events below it for a later claim without
	// the hint. The relay passes the first Seq of its previous batch, so
	// that a claim does not step again over the index entries of the events
	// already delivered (until vacuum or purge removes them); it claims
	// without the hint at least once a second. Per-key order does not rest
	// on it. A driver may ignore it.
	FromSeq int64
	// ScanLimit, when positive, bounds the claim's scan: it examines at
	// most the first ScanLimit pending events from FromSeq, and returns what
	// it could claim among them (possibly nothing, while later events were
	// claimable). The relay sets it on a claim made while another of its
	// batches is open: the keys that batch holds would otherwise make the
	// claim step over every later event of theirs, the whole backlog when
	// there are fewer keys than a batch holds. A claim with no batch open
	// is never bounded, so every claimable event is found. A driver may
	// ignore it.
	ScanLimit int
}

// EventExtendLeasesParams are the parameters of LeasedClaimer.EventExtendLeases.
type EventExtendLeasesParams struct {
	RelayID string
	IDs     []string
	Lease   time.Duration
}

// EventGetParams are the parameters of Driver.EventGet.
type EventGetParams struct {
	ID string
}

// EventInsertParams are the parameters of Driver.EventInsert.
type EventInsertParams struct {
	// Tx is the caller's transaction; the driver writes nothing outside it.
	Tx     *sql.Tx
	Events []InsertEvent
}

// EventListParams are the parameters of Driver.EventList. Zero fields do not filter.
type EventListParams struct {
	Status   Status
	Type     string
	Key      string
	Since    time.Time // created_at >= Since
	Until    time.Time // created_at < Until
	AfterSeq int64     // cursor: only events with Seq > AfterSeq
	Limit    int

	// Topic keeps events of this topic.
	Topic string
	// LastError keeps events whose last error is exactly this text (the
	// web console's "retry these" over one group of dead events).
	LastError string
}

// EventMarkDeliveredParams are the parameters of LeasedClaimer.EventMarkDelivered.
type EventMarkDeliveredParams struct {
	RelayID string
	IDs     []string
}

// FailedAttempt is the outcome of one failed publish.
type FailedAttempt struct {
	ID    string
	Error string
	// Delay is how long to wait before the next attempt (ignored when Dead).
	Delay time.Duration
	// Dead marks the event dead instead of scheduling another attempt.
	Dead bool
}

// EventMarkFailedParams are the parameters of LeasedClaimer.EventMarkFailed.
type EventMarkFailedParams struct {
	RelayID  string
	Failures []FailedAttempt
}

// EventPurgeParams are the parameters of Driver.EventPurge.
type EventPurgeParams struct {
	Before time.Time
	Limit  int
}

// EventReleaseParams are the parameters of LeasedClaimer.EventRelease.
type EventReleaseParams struct {
	RelayID string
	IDs     []string
}

// EventRetryParams are the parameters of Driver.EventRetry. Exactly one of IDs
// and AllDead is set; Type optionally narrows AllDead.
type EventRetryParams struct {
	// IDs are the events to make pending again.
	IDs []string
	// AllDead retries every dead event instead (of Type, when set).
	AllDead bool
	// Type narrows AllDead to one event type.
	Type string
	// Resend, with IDs, marks a send the receiver must get even from a
	// broker that drops a message id it has stored already (NATS
	// JetStream inside its duplicate window): the driver increments the
	// event's header outbox_resend (outbox.MetadataResend: "1", then "2",
	// ...; a stored value
	// that is not a decimal of at most 9 digits counts as 0), and broker
	// modules put it into that id (see outboxbroker.DedupID). The
	// acknowledgment sweep and retries of events awaiting an
	// acknowledgment set it; other retries do not, so a broker that
	// deduplicates still drops an operator's resend of an event it has.
	Resend bool
}

// EventStatsParams are the parameters of Driver.EventStats.
type EventStatsParams struct{}

// EventStats are counters for operators.
type EventStats struct {
	Pending int64
	Dead    int64
	// OldestPending is the created_at of the oldest pending event (zero when none).
	OldestPending time.Time
	// DeliveredLastMinute counts events delivered in the last 60 seconds.
	DeliveredLastMinute int64
	// Now is the database's clock when the stats were read.
	Now time.Time
}

// MigrateStatusParams are the parameters of Driver.MigrateStatus.
type MigrateStatusParams struct{}

// MigrateStatus lists schema versions.
type MigrateStatus struct {
	Applied []int
	Pending []int
}

// MigrateUpParams are the parameters of Driver.MigrateUp.
type MigrateUpParams struct{}

// ErrNotFound is returned by Driver.EventGet when no event has the id.
var ErrNotFound = errors.New("outbox: event not found")

// ErrNotMigrated is returned when the outbox table does not exist yet; run
// MigrateUp (or `outbox migrate up`) first.
var ErrNotMigrated = errors.New("outbox: table does not exist (run migrations first)")

// ErrInvalidConfig is wrapped by every configuration error of the core and the
// drivers; the message names the offending field.
var ErrInvalidConfig = errors.New("outbox: invalid config")

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// ValidateIdentifier checks that name can be used as a table or schema name:
// it must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$. field names the config field in
// the error.
func ValidateIdentifier(field, name string) error {
	if !identRe.MatchString(name) {
		return fmt.Errorf("%w: %s %q must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$", ErrInvalidConfig, field, name)
	}
	return nil
}

// Scanner is a *sql.Row or *sql.Rows.
type Scanner interface{ Scan(dest ...any) error }

// ScanEventStats scans the stats row whose columns are, in this order:
// pending, dead, oldest pending created_at (NULL when none), delivered in the
// last minute, and the database's now — for drivers whose time columns scan
// into time.Time. Errors are returned untranslated.
func ScanEventStats(sc Scanner) (*EventStats, error) {
	s := &EventStats{}
	var oldest sql.NullTime
	if err := sc.Scan(&s.Pending, &s.Dead, &oldest, &s.DeliveredLastMinute, &s.Now); err != nil {
		return nil, err
	}
	if oldest.Valid {
		s.OldestPending = oldest.Time
	}
	return s, nil
}

// ScanEventRow scans one event whose columns are, in this order: seq, id,
// type, topic, key, payload, headers, status, attempts, last_error (not
// NULL), created_at, next_attempt_at, delivered_at, locked_by (not NULL),
// locked_until — for drivers whose time columns scan into time.Time.
// Errors are returned untranslated.
func ScanEventRow(sc Scanner) (*EventRow, error) {
	r := &EventRow{}
	var status string
	var delivered, lockedUntil sql.NullTime
	if err := sc.Scan(&r.Seq, &r.ID, &r.Type, &r.Topic, &r.Key, &r.Payload, &r.Headers, &status, &r.Attempts,
		&r.LastError, &r.CreatedAt, &r.NextAttemptAt, &delivered, &r.LockedBy, &lockedUntil); err != nil {
		return nil, err
	}
	r.Status = Status(status)
	if delivered.Valid {
		r.DeliveredAt = &delivered.Time
	}
	if lockedUntil.Valid {
		r.LockedUntil = &lockedUntil.Time
	}
	return r, nil
}
