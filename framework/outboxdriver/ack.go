package outboxdriver

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// AckStatus is the state of a business acknowledgment awaited for an event
// (see outbox.AckPolicy).
type AckStatus string

const (
	// AckAwaiting marks an event whose receiver has not answered yet: it is
	// pending, delivered and waiting for the answer, or resent.
	AckAwaiting AckStatus = "awaiting"
	// AckAcknowledged marks an event the receiver answered SUCCESS for.
	AckAcknowledged AckStatus = "acknowledged"
	// AckRejected marks an event the receiver rejected, with its reason.
	AckRejected AckStatus = "rejected"
	// AckUnacknowledged marks an event resent MaxResends times without an
	// answer: an operator decides (retry re-arms it).
	AckUnacknowledged AckStatus = "unacknowledged"
)

// Valid reports whether s is one of the known acknowledgment states.
func (s AckStatus) Valid() bool {
	return s == AckAwaiting || s == AckAcknowledged || s == AckRejected || s == AckUnacknowledged
}

// Acknowledger is the optional capability of drivers that store business
// acknowledgments in a table next to the outbox (<table>_acks), discovered
// by the core with a type assertion. Every driver of this repository
// implements it.
//
// The ack row of an event is written by EventInsert in the writer's
// transaction when InsertEvent.Ack is set. Resends go through
// Driver.EventRetry (the one retry-by-id path), so a relay learns of them
// like of any operator retry.
type Acknowledger interface {
	// AckAnswer records a receiver's answer inside the caller's transaction.
	// It changes only a row that is awaiting or unacknowledged, and reports
	// whether it did; a row already answered is left as it is (false, nil).
	// It returns ErrAckNotFound when the event has no ack row.
	AckAnswer(ctx context.Context, params *AckAnswerParams) (bool, error)

	// AckGet returns the ack rows of the given events, by event id; events
	// without one are absent from the map.
	AckGet(ctx context.Context, params *AckGetParams) (map[string]*AckRow, error)

	// AckList returns the ids of events whose ack is in Status, in Seq
	// order after AfterSeq, at most Limit.
	AckList(ctx context.Context, params *AckListParams) ([]string, error)

	// AckListDue returns at most Limit awaiting acks whose event is
	// delivered and whose answer is overdue: delivered_at plus Deadline
	// (before any resend) or plus ResendBackoff (after one) is past, by the
	// database's clock.
	AckListDue(ctx context.Context, params *AckListDueParams) ([]*AckRow, error)

	// AckMarkResent counts one resend of an awaiting ack whose resends are
	// still Resends (a conditional update, so that of several relays sweeping
	// at once exactly one wins) and reports whether it did.
	AckMarkResent(ctx context.Context, params *AckMarkParams) (bool, error)

	// AckMarkUnacknowledged gives up on an awaiting ack whose resends are
	// still Resends and reports whether it did.
	AckMarkUnacknowledged(ctx context.Context, params *AckMarkParams) (bool, error)

	// AckPurge deletes at most Limit ack rows whose event no longer exists
	// (purged) and returns how many it deleted.
	AckPurge(ctx context.Context, params *AckPurgeParams) (int64, error)

	// AckRearm makes the unacknowledged acks of the given events awaiting
	// again with no resends counted, and returns how many changed.
	AckRearm(ctx context.Context, params *AckRearmParams) (int64, error)

	// AckStats returns the acknowledgment counters.
	AckStats(ctx context.Context, params *AckStatsParams) (*AckStats, error)
}

// InsertAck is the acknowledgment policy stored with an event by
// EventInsert; the core has validated it.
type InsertAck struct {
	Deadline      time.Duration
	ResendBackoff time.Duration
	MaxResends    int
}

// AckRow is the stored acknowledgment state of one event.
type AckRow struct {
	EventID       string
	Status        AckStatus
	Reason        string
	Deadline      time.Duration
	ResendBackoff time.Duration
	MaxResends    int
	Resends       int
	CreatedAt     time.Time
	AnsweredAt    *time.Time
	ResentAt      *time.Time
}

// AckAnswerParams are the parameters of Acknowledger.AckAnswer.
type AckAnswerParams struct {
	// Tx is the caller's transaction; the driver writes nothing outside it.
	Tx      *sql.Tx
	EventID string
	// Status is AckAcknowledged or AckRejected.
	Status AckStatus
	Reason string
}

// AckGetParams are the parameters of Acknowledger.AckGet.
type AckGetParams struct {
	IDs []string
}

// AckListParams are the parameters of Acknowledger.AckList.
type AckListParams struct {
	Status   AckStatus
	AfterSeq int64
	Limit    int
}

// AckListDueParams are the parameters of Acknowledger.AckListDue.
type AckListDueParams struct {
	Limit int
}

// AckMarkParams are the parameters of Acknowledger.AckMarkResent and
// AckMarkUnacknowledged.
type AckMarkParams struct {
	EventID string
	// Resends is the count the caller read: the update happens only if it
	// is still the stored one.
	Resends int
}

// AckPurgeParams are the parameters of Acknowledger.AckPurge.
type AckPurgeParams struct {
	Limit int
}

// AckRearmParams are the parameters of Acknowledger.AckRearm.
type AckRearmParams struct {
	IDs []string
}

// AckStatsParams are the parameters of Acknowledger.AckStats.
type AckStatsParams struct{}

// AckStats are acknowledgment counters for operators.
type AckStats struct {
	Awaiting       int64
	Rejected       int64
	Unacknowledged int64
	// OldestAwaiting is the created_at of the oldest awaiting ack (zero when none).
	OldestAwaiting time.Time
	// Now is the database's clock when the stats were read.
	Now time.Time
}

// ErrAckNotFound is returned by Acknowledger.AckAnswer when the event has
// no ack row: the id is unknown, or the event was inserted without
// AwaitAck.
var ErrAckNotFound = errors.New("outbox: no acknowledgment awaited for this event id")

// Millis converts a stored millisecond count to a duration.
func Millis(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// ScanAckRow scans one ack row whose columns are, in this order: event id,
// status, reason, deadline and resend backoff (milliseconds), max resends,
// resends, created_at, answered_at and resent_at (NULL until then) — for
// drivers whose time columns scan into time.Time. Errors are returned
// untranslated.
func ScanAckRow(sc Scanner) (*AckRow, error) {
	a := &AckRow{}
	var status string
	var deadline, backoff int64
	var answered, resent sql.NullTime
	if err := sc.Scan(&a.EventID, &status, &a.Reason, &deadline, &backoff, &a.MaxResends, &a.Resends,
		&a.CreatedAt, &answered, &resent); err != nil {
		return nil, err
	}
	a.Status = AckStatus(status)
	a.Deadline, a.ResendBackoff = Millis(deadline), Millis(backoff)
	if answered.Valid {
		a.AnsweredAt = &answered.Time
	}
	if resent.Valid {
		a.ResentAt = &resent.Time
	}
	return a, nil
}

// AnswerAck is Acknowledger.AckAnswer over two statements of tx: answer
// (with args) records the answer and affects no row when the event has one
// already; exists (parameter: eventID) then counts the event's ack rows, so
// that an event awaiting no answer is ErrAckNotFound. Other errors are
// returned untranslated.
func AnswerAck(ctx context.Context, tx *sql.Tx, answer string, args []any, exists, eventID string) (bool, error) {
	res, err := tx.ExecContext(ctx, answer, args...)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return n > 0, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, exists, eventID).Scan(&n); err != nil {
		return false, err
	}
	if n == 0 {
		return false, ErrAckNotFound
	}
	return false, nil
}
