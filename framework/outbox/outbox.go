// Package outbox is the transactional outbox for Go services: write business
// rows and the events that describe them in ONE database transaction, and let
// a Relay publish those events to a broker through Watermill.
//
// The delivery contract: an event is published if and only if its
// transaction committed; every committed event is published at least once
// (duplicates only for events in flight at a crash, at most one batch per
// relay, always with the same id); events with the same key reach the broker
// in commit order; a failing event is retried with capped exponential backoff
// and then marked dead without holding back other keys; and the relay never
// makes an application INSERT wait.
//
// Typical wiring:
//
//	drv, _ := postgres.New(db, postgres.Config{})   // drivers/postgres
//	ob, _ := outbox.New(drv, outbox.Config{})
//	_ = ob.Migrate(ctx)
//
//	tx, _ := db.BeginTx(ctx, nil)
//	// ... business writes on tx ...
//	_ = ob.Insert(ctx, tx, &outbox.Event{Type: "invoice.issued", Topic: "invoices", Key: id, Payload: body})
//	_ = tx.Commit()
//
//	relay, _ := outbox.NewRelay(drv, publisher, outbox.RelayConfig{})
//	_ = relay.Run(ctx) // until ctx is cancelled
package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// DefaultMaxPayloadBytes is the default Config.MaxPayloadBytes: 1 MiB.
const DefaultMaxPayloadBytes = 1 << 20

// Config configures an Outbox (the writer and admin side).
type Config struct {
	// MaxPayloadBytes rejects, at Insert, events whose payload is larger.
	// Zero means DefaultMaxPayloadBytes (1 MiB); negative is invalid. Keep it
	// below your broker's own limit (NATS defaults to 1 MiB per message).
	MaxPayloadBytes int

	// Propagate, when set, is called at Insert with the caller's context and
	// the event's headers so tracing context travels with the event. With
	// OpenTelemetry:
	//
	//	Propagate: func(ctx context.Context, h map[string]string) {
	//		otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(h))
	//	}
	//
	// Nil means: copy a traceparent/tracestate put in the context with
	// ContextWithTraceparent, if any.
	Propagate func(ctx context.Context, headers map[string]string)

	// Logger receives operational logs. Nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	c.MaxPayloadBytes = cmp.Or(c.MaxPayloadBytes, DefaultMaxPayloadBytes)
	if c.Propagate == nil {
		c.Propagate = propagateFromContext
	}
	if c.Logger == nil {
		c.Logger = discardLogger()
	}
	return c
}

func (c Config) validate() error {
	if c.MaxPayloadBytes < 0 {
		return configError("MaxPayloadBytes %d must not be negative", c.MaxPayloadBytes)
	}
	return nil
}

// Outbox writes events inside callers' transactions and administers stored
// events (stats, list, retry, purge). It is safe for concurrent use.
type Outbox struct {
	driver outboxdriver.Driver
	cfg    Config
}

// New returns an Outbox on the given driver (see drivers/postgres and
// drivers/mysql).
func New(driver outboxdriver.Driver, cfg Config) (*Outbox, error) {
	if driver == nil {
		return nil, configError("driver must not be nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Outbox{driver: driver, cfg: cfg}, nil
}

// Driver returns the driver the Outbox was built on.
func (o *Outbox) Driver() outboxdriver.Driver { return o.driver }

// Migrate creates or upgrades the outbox table. It is idempotent and safe to
// call from several processes at start-up.
func (o *Outbox) Migrate(ctx context.Context) error {
	return o.driver.MigrateUp(ctx, &outboxdriver.MigrateUpParams{})
}

// Insert validates events and inserts them inside tx, the caller's
// transaction. They are published if and only if tx commits.
//
// The signature takes a *sql.Tx on purpose: writing events through a *sql.DB
// (autocommit) would publish them even when the business transaction rolls
// back, which is exactly the bug the outbox exists to prevent. With sqlx or
// similar wrappers, pass the underlying *sql.Tx.
//
// Insert fills each event's ID (a UUIDv7 when empty) and CreatedAt. When any
// event is invalid (see EventError: Type, Topic, Key and header names and
// values must be valid UTF-8 without NUL bytes, within MaxNameBytes and
// MaxHeaderValueBytes), Insert returns an *EventError before running any
// statement: nothing is written and the transaction stays usable.
//
// An event whose explicit ID is already stored is skipped when its type,
// topic, key and payload are identical (an idempotent retry); when they
// differ, Insert returns an error wrapping ErrDuplicateEvent. Other events of
// that call may then have been written in tx: roll it back.
func (o *Outbox) Insert(ctx context.Context, tx *sql.Tx, events ...*Event) error {
	if tx == nil {
		return fmt.Errorf("%w: Insert needs the caller's *sql.Tx, got nil", ErrInvalidEvent)
	}
	if len(events) == 0 {
		return nil
	}
	rows := make([]outboxdriver.InsertEvent, len(events))
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, e := range events {
		row, err := o.prepare(ctx, i, e, now)
		if err != nil {
			return err
		}
		rows[i] = row
	}
	if err := o.driver.EventInsert(ctx, &outboxdriver.EventInsertParams{Tx: tx, Events: rows}); err != nil {
		return fmt.Errorf("outbox: insert into %s: %w", o.driver.Table(), err)
	}
	nudges.nudge(nudgeKey(o.driver))
	for i, e := range events {
		e.ID = rows[i].ID
		e.CreatedAt = rows[i].CreatedAt
	}
	return nil
}

// MaxNameBytes is the longest Type, Topic, Key or header name Insert
// accepts, in bytes.
const MaxNameBytes = 255

// MaxHeaderValueBytes is the longest header value Insert accepts, in bytes.
const MaxHeaderValueBytes = 8 << 10

// checkText says what is wrong with s as a stored text column or header
// (invalid UTF-8, a NUL byte, longer than limit bytes), or "" when nothing
// is. Every database stores such a value differently or not at all
// (PostgreSQL refuses it and aborts the transaction, MySQL keeps the NUL,
// JSON rewrites invalid UTF-8), so Insert refuses it before any statement.
func checkText(s string, limit int) string {
	switch {
	case len(s) > limit:
		return fmt.Sprintf("%d bytes, longer than %d", len(s), limit)
	case !utf8.ValidString(s):
		return fmt.Sprintf("%s is not valid UTF-8", quoteShort(s))
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Sprintf("%s contains a NUL byte", quoteShort(s))
	}
	return ""
}

// quoteShort quotes s for an error message, cut after 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q...", s[:64])
	}
	return fmt.Sprintf("%q", s)
}

func (o *Outbox) prepare(ctx context.Context, i int, e *Event, now time.Time) (outboxdriver.InsertEvent, error) {
	invalid := func(field, reason string) error {
		return &EventError{Index: i, Field: field, Reason: reason, Err: ErrInvalidEvent}
	}
	if e == nil {
		return outboxdriver.InsertEvent{}, invalid("Event", "nil event")
	}
	id := e.ID
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return outboxdriver.InsertEvent{}, fmt.Errorf("outbox: generate event id: %w", err)
		}
		id = u.String()
	} else if u, err := uuid.Parse(id); err != nil {
		return outboxdriver.InsertEvent{}, invalid("ID", fmt.Sprintf("%q is not a UUID", id))
	} else {
		id = u.String()
	}
	if strings.TrimSpace(e.Type) == "" {
		return outboxdriver.InsertEvent{}, invalid("Type", "must not be empty")
	}
	if strings.TrimSpace(e.Topic) == "" {
		return outboxdriver.InsertEvent{}, invalid("Topic", "must not be empty")
	}
	for _, f := range []struct{ field, value string }{{"Type", e.Type}, {"Topic", e.Topic}, {"Key", e.Key}} {
		if reason := checkText(f.value, MaxNameBytes); reason != "" {
			return outboxdriver.InsertEvent{}, invalid(f.field, reason)
		}
	}
	if len(e.Payload) > o.cfg.MaxPayloadBytes {
		return outboxdriver.InsertEvent{}, &EventError{Index: i, Field: "Payload", Err: ErrEventTooLarge,
			Reason: fmt.Sprintf("%d bytes exceeds MaxPayloadBytes %d", len(e.Payload), o.cfg.MaxPayloadBytes)}
	}
	headers := make(map[string]string, len(e.Headers)+2)
	for k, v := range e.Headers {
		if k == "" {
			return outboxdriver.InsertEvent{}, invalid("Headers", "empty header name")
		}
		if strings.HasPrefix(k, reservedPrefix) {
			return outboxdriver.InsertEvent{}, invalid("Headers", fmt.Sprintf("%q uses the reserved prefix %q", k, reservedPrefix))
		}
		headers[k] = v
	}
	o.cfg.Propagate(ctx, headers)
	// Checked after Propagate: what it adds is stored and published too.
	for k, v := range headers {
		if reason := checkText(k, MaxNameBytes); reason != "" {
			return outboxdriver.InsertEvent{}, invalid("Headers", fmt.Sprintf("header name: %s", reason))
		}
		if reason := checkText(v, MaxHeaderValueBytes); reason != "" {
			return outboxdriver.InsertEvent{}, invalid("Headers", fmt.Sprintf("value of header %s: %s", quoteShort(k), reason))
		}
	}
	hb, err := json.Marshal(headers)
	if err != nil {
		return outboxdriver.InsertEvent{}, invalid("Headers", err.Error())
	}
	payload := e.Payload
	if payload == nil {
		payload = []byte{}
	}
	row := outboxdriver.InsertEvent{
		ID: id, Type: e.Type, Topic: e.Topic, Key: e.Key,
		Payload: payload, Headers: hb, CreatedAt: now,
	}
	if e.AwaitAck != nil {
		if field, reason := e.AwaitAck.validate(); field != "" {
			return outboxdriver.InsertEvent{}, invalid(field, reason)
		}
		if _, ok := o.driver.(outboxdriver.Acknowledger); !ok {
			return outboxdriver.InsertEvent{}, invalid("AwaitAck", fmt.Sprintf("the %s driver does not support acknowledgments", o.driver.Name()))
		}
		row.Ack = insertAck(e.AwaitAck)
	}
	return row, nil
}

// Get returns one stored event by id, or an error wrapping ErrNotFound. A
// row whose headers cannot be decoded is still returned, with the reason in
// LastError.
func (o *Outbox) Get(ctx context.Context, id string) (*StoredEvent, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("outbox: get %q: not an event id: %w", id, ErrNotFound)
	}
	row, err := o.driver.EventGet(ctx, &outboxdriver.EventGetParams{ID: u.String()})
	if err != nil {
		return nil, fmt.Errorf("outbox: get %s: %w", id, err)
	}
	s := readable(storedFromRow(row))
	if err := o.attachAcks(ctx, []*StoredEvent{s}); err != nil {
		return nil, fmt.Errorf("outbox: get %s: ack state: %w", id, err)
	}
	return s, nil
}

// readable keeps an unreadable row visible to operators: the decode error
// goes to LastError (unless the relay already recorded one).
func readable(s *StoredEvent, err error) *StoredEvent {
	if err != nil {
		s.LastError = cmp.Or(s.LastError, err.Error())
	}
	return s
}

// ListFilter selects events for List. Zero fields do not filter.
type ListFilter struct {
	// Status keeps events in this status.
	Status Status
	// Type keeps events of this type.
	Type string
	// Key keeps events of this key.
	Key string
	// Topic keeps events of this topic.
	Topic string
	// LastError keeps events whose last error is exactly this text.
	LastError string
	// Ack keeps events whose business acknowledgment is in this state
	// (events inserted with AwaitAck only).
	Ack AckStatus
	// Since keeps events created at or after it.
	Since time.Time
	// Until keeps events created before it.
	Until time.Time
	// After is the pagination cursor: the Seq of the last event of the
	// previous page (ListPage.Next).
	After int64
	// Limit is the page size. Zero means 100; at most 10000.
	Limit int
}

// ListPage is one page of List results.
type ListPage struct {
	// Events are ordered by Seq (insertion order).
	Events []*StoredEvent
	// Next is the cursor for the following page (ListFilter.After); zero when
	// this page is the last.
	Next int64
}

// List returns events matching f, oldest first, one page at a time.
func (o *Outbox) List(ctx context.Context, f ListFilter) (*ListPage, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, fmt.Errorf("outbox: list: unknown status %q (want pending, delivered or dead)", f.Status)
	}
	limit := cmp.Or(f.Limit, 100)
	if limit < 0 || limit > 10000 {
		return nil, fmt.Errorf("outbox: list: Limit %d out of range 1..10000", f.Limit)
	}
	if f.Ack != "" {
		if !f.Ack.Valid() {
			return nil, fmt.Errorf("outbox: list: unknown ack state %q (want awaiting, acknowledged, rejected or unacknowledged)", f.Ack)
		}
		return o.listByAck(ctx, f, limit)
	}
	rows, err := o.driver.EventList(ctx, &outboxdriver.EventListParams{
		Status: f.Status, Type: f.Type, Key: f.Key, Topic: f.Topic, LastError: f.LastError,
		Since: f.Since, Until: f.Until,
		AfterSeq: f.After, Limit: limit + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: list: %w", err)
	}
	page := &ListPage{}
	if len(rows) > limit {
		rows = rows[:limit]
		page.Next = rows[limit-1].Seq
	}
	for _, r := range rows {
		page.Events = append(page.Events, readable(storedFromRow(r)))
	}
	if err := o.attachAcks(ctx, page.Events); err != nil {
		return nil, fmt.Errorf("outbox: list: ack state: %w", err)
	}
	return page, nil
}

// Stats are counters for operators and health checks.
type Stats struct {
	// Pending counts events not yet delivered (including those in backoff).
	Pending int64
	// Dead counts events that exhausted their attempts.
	Dead int64
	// OldestPendingAge is how long the oldest pending event has waited.
	OldestPendingAge time.Duration
	// DeliveredLastMinute counts events delivered in the last 60 seconds.
	DeliveredLastMinute int64
	// Ack holds the business acknowledgment counters (nil when the driver
	// does not implement outboxdriver.Acknowledger, or its ack table is not
	// migrated yet).
	Ack *AckStats
}

// Stats returns the outbox counters.
func (o *Outbox) Stats(ctx context.Context) (*Stats, error) {
	s, err := o.driver.EventStats(ctx, &outboxdriver.EventStatsParams{})
	if err != nil {
		return nil, fmt.Errorf("outbox: stats: %w", err)
	}
	out := &Stats{Pending: s.Pending, Dead: s.Dead, DeliveredLastMinute: s.DeliveredLastMinute}
	if !s.OldestPending.IsZero() {
		out.OldestPendingAge = max(0, s.Now.Sub(s.OldestPending))
	}
	if out.Ack, err = o.ackStats(ctx); err != nil {
		return nil, fmt.Errorf("outbox: stats: acks: %w", err)
	}
	return out, nil
}

// Retry makes the given events pending again with a fresh attempt budget, so
// the relay (re)publishes them: dead events are retried, delivered ones are
// resent, pending ones not currently leased are scheduled immediately. It
// returns how many events changed. Unknown ids are ignored. An event whose
// business acknowledgment is unacknowledged awaits it again, with its
// resends counted from zero.
//
// A broker that drops a message id it has stored (NATS JetStream, inside
// its duplicate window) drops the resend of an event it has, unless the
// event awaits (or awaited) a business acknowledgment: those are resends
// the receiver must get, counted in MetadataResend.
func (o *Outbox) Retry(ctx context.Context, ids ...string) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	norm := make([]string, len(ids))
	for i, id := range ids {
		u, err := uuid.Parse(id)
		if err != nil {
			return 0, fmt.Errorf("outbox: retry: %q is not an event id", id)
		}
		norm[i] = u.String()
	}
	ack, _ := o.driver.(outboxdriver.Acknowledger)
	plain, resend := norm, []string(nil)
	if ack != nil {
		acks, err := ack.AckGet(ctx, &outboxdriver.AckGetParams{IDs: norm})
		if err != nil && !errors.Is(err, outboxdriver.ErrNotMigrated) {
			return 0, fmt.Errorf("outbox: retry: acknowledgments: %w", err)
		}
		plain = nil
		for _, id := range norm {
			if acks[id] != nil {
				resend = append(resend, id)
			} else {
				plain = append(plain, id)
			}
		}
	}
	var n int64
	for _, p := range []*outboxdriver.EventRetryParams{{IDs: plain}, {IDs: resend, Resend: true}} {
		if len(p.IDs) == 0 {
			continue
		}
		k, err := o.driver.EventRetry(ctx, p)
		n += k
		if err != nil {
			return n, fmt.Errorf("outbox: retry: %w", err)
		}
	}
	// Re-armed after the retry: until the resend is delivered, the sweep
	// sees a pending event and leaves it alone.
	if len(resend) > 0 {
		if _, err := ack.AckRearm(ctx, &outboxdriver.AckRearmParams{IDs: resend}); err != nil {
			return n, fmt.Errorf("outbox: retry: re-arm acknowledgments: %w", err)
		}
	}
	return n, nil
}

// RetryDead makes every dead event (of eventType, when not empty) pending
// again with a fresh attempt budget and returns how many changed.
func (o *Outbox) RetryDead(ctx context.Context, eventType string) (int64, error) {
	n, err := o.driver.EventRetry(ctx, &outboxdriver.EventRetryParams{AllDead: true, Type: eventType})
	if err != nil {
		return 0, fmt.Errorf("outbox: retry dead: %w", err)
	}
	return n, nil
}

// PurgeOptions tune Purge.
type PurgeOptions struct {
	// BatchSize bounds each DELETE so that purging never holds long locks.
	// Zero means 1000.
	BatchSize int
	// Progress, when set, is called after each batch with the running total.
	Progress func(deleted int64)
}

// Purge deletes delivered events older than olderThan, in bounded batches,
// and returns how many it deleted. Pending and dead events are never purged,
// nor events whose business acknowledgment is awaiting or unacknowledged
// (they are not done); the ack rows of purged events are deleted after them.
// It stops early, returning what it deleted so far, when ctx is cancelled.
func (o *Outbox) Purge(ctx context.Context, olderThan time.Duration, opts PurgeOptions) (int64, error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("outbox: purge: olderThan %s must not be negative", olderThan)
	}
	batch := cmp.Or(opts.BatchSize, 1000)
	if batch < 1 {
		return 0, fmt.Errorf("outbox: purge: BatchSize %d must be positive", opts.BatchSize)
	}
	before := time.Now().Add(-olderThan)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := o.driver.EventPurge(ctx, &outboxdriver.EventPurgeParams{Before: before, Limit: batch})
		if err != nil {
			return total, fmt.Errorf("outbox: purge: %w", err)
		}
		total += n
		if opts.Progress != nil && n > 0 {
			opts.Progress(total)
		}
		if n < int64(batch) {
			return total, o.purgeAcks(ctx, batch)
		}
	}
}

// purgeAcks deletes, in bounded batches, the ack rows whose event is gone.
func (o *Outbox) purgeAcks(ctx context.Context, batch int) error {
	ack, ok := o.driver.(outboxdriver.Acknowledger)
	if !ok {
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := ack.AckPurge(ctx, &outboxdriver.AckPurgeParams{Limit: batch})
		if errors.Is(err, ErrNotMigrated) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("outbox: purge acknowledgments: %w", err)
		}
		if n < int64(batch) {
			return nil
		}
	}
}
