// Package inbox makes message consumers idempotent: each message is processed
// in a transaction on the consumer's database that also records (consumer,
// event id) under a unique constraint, so the effect of a message applies
// exactly once however many times the broker redelivers it.
//
// The relay (package outbox) delivers at least once; put the inbox in front of
// every handler whose effect must not repeat:
//
//	in, _ := inbox.New(drv, inbox.Config{Consumer: "teletransmission"})
//	_ = in.Migrate(ctx)
//	router.AddConsumerHandler("send", "invoices", sub, in.Middleware(func(msg *message.Message) error {
//		tx, _ := inbox.Tx(msg.Context()) // the inbox transaction: write your effect with it
//		_, err := tx.ExecContext(msg.Context(), "UPDATE invoices SET sent = true WHERE id = $1", id)
//		return err
//	}))
//
// A duplicate is acknowledged without running the handler. A handler error
// rolls back both the effect and the inbox record, so the message is
// redelivered and not marked processed.
package inbox

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// ErrNoEventID is returned (and the message nacked) when a message has no
// usable event id: an empty or non-UUID message UUID.
var ErrNoEventID = errors.New("inbox: message has no event id (empty or non-UUID message UUID)")

// Config configures an Inbox.
type Config struct {
	// Consumer names the logical consumer (e.g. "teletransmission"); each
	// consumer processes every event once. Required; 1..128 characters of
	// letters, digits, '.', '_', '-', ':'.
	Consumer string

	// Retention is how long processed ids are kept to detect redeliveries.
	// It must exceed the longest redelivery delay of your broker. Zero means
	// 7 days.
	Retention time.Duration

	// PruneBatch bounds each DELETE of Prune. Zero means 1000.
	PruneBatch int

	// TxOptions are used to begin each message's transaction. Nil means the
	// database default (READ COMMITTED on PostgreSQL).
	TxOptions *sql.TxOptions

	// Logger receives operational logs. Nil discards them.
	Logger *slog.Logger
}

var consumerRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func (c Config) withDefaults() Config {
	c.Retention = cmp.Or(c.Retention, 7*24*time.Hour)
	c.PruneBatch = cmp.Or(c.PruneBatch, 1000)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case !consumerRe.MatchString(c.Consumer):
		return fmt.Errorf("%w: inbox.Config.Consumer %q must match %s", outboxdriver.ErrInvalidConfig, c.Consumer, consumerRe)
	case c.Retention < 0:
		return fmt.Errorf("%w: inbox.Config.Retention %s must not be negative", outboxdriver.ErrInvalidConfig, c.Retention)
	case c.PruneBatch < 1:
		return fmt.Errorf("%w: inbox.Config.PruneBatch %d must be positive", outboxdriver.ErrInvalidConfig, c.PruneBatch)
	}
	return nil
}

// Inbox deduplicates messages for one consumer. It is safe for concurrent use.
type Inbox struct {
	db  *sql.DB
	drv outboxdriver.Inbox
	cfg Config
}

// New returns an inbox on the driver's database. The driver must implement
// outboxdriver.Inbox (drivers/postgres and drivers/mysql do).
func New(driver outboxdriver.Driver, cfg Config) (*Inbox, error) {
	if driver == nil {
		return nil, fmt.Errorf("%w: inbox: driver must not be nil", outboxdriver.ErrInvalidConfig)
	}
	drv, ok := driver.(outboxdriver.Inbox)
	if !ok {
		return nil, fmt.Errorf("%w: inbox: driver %q does not support the inbox", outboxdriver.ErrInvalidConfig, driver.Name())
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Inbox{db: driver.DB(), drv: drv, cfg: cfg}, nil
}

// Migrate creates the inbox table (idempotent).
func (in *Inbox) Migrate(ctx context.Context) error {
	return in.drv.InboxMigrateUp(ctx, &outboxdriver.InboxMigrateUpParams{})
}

type txKey struct{}

// Tx returns the inbox transaction a handler runs in (Middleware and Process
// put it in the context). Write the message's effect through it.
func Tx(ctx context.Context) (*sql.Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(*sql.Tx)
	return tx, ok
}

// Process runs fn once per (consumer, eventID): in a new transaction it
// records the id, runs fn with the transaction (also in ctx, see Tx) and
// commits both. It returns processed=false without running fn when the event
// was already processed. An error from fn rolls everything back.
func (in *Inbox) Process(ctx context.Context, eventID string, fn func(ctx context.Context, tx *sql.Tx) error) (processed bool, err error) {
	u, err := uuid.Parse(eventID)
	if err != nil || eventID == "" {
		return false, fmt.Errorf("%w: %q", ErrNoEventID, eventID)
	}
	tx, err := in.db.BeginTx(ctx, in.cfg.TxOptions)
	if err != nil {
		return false, fmt.Errorf("inbox: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	fresh, err := in.drv.InboxInsert(ctx, &outboxdriver.InboxInsertParams{Tx: tx, Consumer: in.cfg.Consumer, EventID: u.String()})
	if err != nil {
		return false, fmt.Errorf("inbox: record %s: %w", eventID, err)
	}
	if !fresh {
		in.cfg.Logger.Debug("duplicate skipped", "consumer", in.cfg.Consumer, "event_id", eventID)
		return false, nil
	}
	if err := fn(context.WithValue(ctx, txKey{}, tx), tx); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("inbox: commit %s: %w", eventID, err)
	}
	return true, nil
}

// Middleware returns a Watermill handler middleware that runs the handler
// through Process with the message UUID as event id. Duplicates are acked
// without running the handler; handler errors roll back and nack.
func (in *Inbox) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		var out []*message.Message
		_, err := in.Process(msg.Context(), msg.UUID, func(ctx context.Context, _ *sql.Tx) error {
			orig := msg.Context()
			msg.SetContext(ctx)
			defer msg.SetContext(orig)
			var herr error
			out, herr = h(msg)
			return herr
		})
		return out, err
	}
}

// NoPublishMiddleware is Middleware for handlers that produce no messages
// (message.NoPublishHandlerFunc), as used with Router.AddConsumerHandler.
func (in *Inbox) NoPublishMiddleware(h message.NoPublishHandlerFunc) message.NoPublishHandlerFunc {
	wrapped := in.Middleware(func(msg *message.Message) ([]*message.Message, error) { return nil, h(msg) })
	return func(msg *message.Message) error {
		_, err := wrapped(msg)
		return err
	}
}

// Prune deletes processed ids older than Retention in bounded batches and
// returns how many it deleted.
func (in *Inbox) Prune(ctx context.Context) (int64, error) {
	before := time.Now().Add(-in.cfg.Retention)
	var total int64
	for {
		n, err := in.drv.InboxPrune(ctx, &outboxdriver.InboxPruneParams{Before: before, Limit: in.cfg.PruneBatch})
		total += n
		if err != nil {
			return total, fmt.Errorf("inbox: prune: %w", err)
		}
		if n < int64(in.cfg.PruneBatch) {
			return total, nil
		}
	}
}

// RunPruner prunes every interval (zero means 1 hour) until ctx is cancelled.
func (in *Inbox) RunPruner(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(cmp.Or(interval, time.Hour))
	defer t.Stop()
	for {
		if n, err := in.Prune(ctx); err != nil && ctx.Err() == nil {
			in.cfg.Logger.Warn("inbox prune failed", "consumer", in.cfg.Consumer, "err", err)
		} else if n > 0 {
			in.cfg.Logger.Info("inbox pruned", "consumer", in.cfg.Consumer, "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
