package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// AckStatus is the state of the business acknowledgment awaited for an
// event inserted with Event.AwaitAck. The event's own Status still says
// where its publishing stands (pending, delivered, dead); AckStatus says
// whether the receiving system took it into account.
type AckStatus = outboxdriver.AckStatus

const (
	// AckAwaiting: no answer yet. The event is on its way, delivered and
	// waiting for the answer, or resent after its deadline.
	AckAwaiting = outboxdriver.AckAwaiting
	// AckAcknowledged: the receiver answered SUCCESS. Final.
	AckAcknowledged = outboxdriver.AckAcknowledged
	// AckRejected: the receiver refused the event, with its reason. Final:
	// fix the cause and insert a new event.
	AckRejected = outboxdriver.AckRejected
	// AckUnacknowledged: resent MaxResends times without an answer. An
	// operator decides: Retry resends the event and awaits again.
	AckUnacknowledged = outboxdriver.AckUnacknowledged
)

// ErrAckNotFound is returned (wrapped) by Acknowledge when no
// acknowledgment is awaited for the event id: the id is unknown, not a UUID,
// or its event was inserted without AwaitAck.
var ErrAckNotFound = outboxdriver.ErrAckNotFound

// ErrAckUnsupported is returned when AwaitAck, Acknowledge or an ack filter
// is used on a driver that does not implement outboxdriver.Acknowledger.
var ErrAckUnsupported = errors.New("outbox: the driver does not support acknowledgments")

// ErrInvalidAck is wrapped by the error Acknowledge returns for a bad
// outcome (a reason that is not valid UTF-8, holds a NUL byte or is longer
// than MaxAckReasonBytes). See SanitizeAckReason.
var ErrInvalidAck = errors.New("outbox: invalid acknowledgment")

// MaxAckReasonBytes is the longest rejection reason Acknowledge accepts.
const MaxAckReasonBytes = 4 << 10

// MaxAckDeadline bounds AckPolicy.Deadline and AckPolicy.ResendBackoff.
const MaxAckDeadline = 90 * 24 * time.Hour

// MaxAckResends bounds AckPolicy.MaxResends.
const MaxAckResends = 1000

// AckPolicy asks the receiver of an event for a business acknowledgment
// (see Event.AwaitAck): once the broker has the event, its ack is
// awaiting; the receiver answers SUCCESS or a rejection with
// Outbox.Acknowledge (or through package outboxack's reply handler). When
// no answer comes in time, the relay publishes the event again with the
// same id (consumers and inboxes deduplicate it), up to MaxResends times,
// and then marks it unacknowledged for an operator.
type AckPolicy struct {
	// Deadline is how long the receiver has to answer after the event was
	// delivered to the broker, before it is resent. Required: at least
	// 1ms, at most MaxAckDeadline. Overdue acks are found by the relays'
	// sweep (RelayConfig.AckSweepInterval), so a resend happens up to one
	// sweep interval after the deadline.
	Deadline time.Duration

	// MaxResends is how many times the event is resent before its ack
	// becomes unacknowledged. Zero means no resend: silence past Deadline
	// makes it unacknowledged at once. At most MaxAckResends.
	MaxResends int

	// ResendBackoff is how long the receiver has to answer after each
	// resend. Zero means Deadline. At most MaxAckDeadline.
	ResendBackoff time.Duration
}

// validate says what is wrong with p as an Event.AwaitAck, naming the field.
func (p *AckPolicy) validate() (field, reason string) {
	switch {
	case p.Deadline < time.Millisecond:
		return "AwaitAck.Deadline", fmt.Sprintf("%s must be at least 1ms", p.Deadline)
	case p.Deadline > MaxAckDeadline:
		return "AwaitAck.Deadline", fmt.Sprintf("%s exceeds %s", p.Deadline, MaxAckDeadline)
	case p.MaxResends < 0 || p.MaxResends > MaxAckResends:
		return "AwaitAck.MaxResends", fmt.Sprintf("%d out of range 0..%d", p.MaxResends, MaxAckResends)
	case p.ResendBackoff < 0:
		return "AwaitAck.ResendBackoff", fmt.Sprintf("%s must not be negative", p.ResendBackoff)
	case p.ResendBackoff > 0 && p.ResendBackoff < time.Millisecond:
		return "AwaitAck.ResendBackoff", fmt.Sprintf("%s must be zero or at least 1ms", p.ResendBackoff)
	case p.ResendBackoff > MaxAckDeadline:
		return "AwaitAck.ResendBackoff", fmt.Sprintf("%s exceeds %s", p.ResendBackoff, MaxAckDeadline)
	}
	return "", ""
}

// AckOutcome is a receiver's answer, for Outbox.Acknowledge: AckSuccess or
// AckRejection(reason).
type AckOutcome struct {
	// Rejected is false for SUCCESS.
	Rejected bool
	// Reason is the receiver's explanation (kept for a SUCCESS too).
	Reason string
}

// AckSuccess is the positive answer: the receiver took the event into account.
var AckSuccess = AckOutcome{}

// AckRejection returns the negative answer with the receiver's reason.
func AckRejection(reason string) AckOutcome { return AckOutcome{Rejected: true, Reason: reason} }

// AckState is the acknowledgment state of a stored event (StoredEvent.Ack).
type AckState struct {
	Status AckStatus
	// Reason is the receiver's reason (rejections), empty otherwise.
	Reason string
	// Resends counts the resends after silence so far.
	Resends int
	// Policy is the event's AwaitAck.
	Policy AckPolicy
	// AnsweredAt is when the answer was recorded (nil while none).
	AnsweredAt *time.Time
	// ResentAt is when the last resend was decided (nil while none).
	ResentAt *time.Time
}

func ackStateFromRow(a *outboxdriver.AckRow) *AckState {
	return &AckState{
		Status: a.Status, Reason: a.Reason, Resends: a.Resends,
		Policy:     AckPolicy{Deadline: a.Deadline, MaxResends: a.MaxResends, ResendBackoff: a.ResendBackoff},
		AnsweredAt: a.AnsweredAt, ResentAt: a.ResentAt,
	}
}

// SanitizeAckReason makes any text a storable reason: invalid UTF-8
// becomes U+FFFD, NUL bytes are dropped, and it is cut (at a character
// boundary) to MaxAckReasonBytes. Reply handlers use it on untrusted input.
func SanitizeAckReason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= MaxAckReasonBytes {
		return s
	}
	cut := MaxAckReasonBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func (o *Outbox) acknowledger() (outboxdriver.Acknowledger, error) {
	a, ok := o.driver.(outboxdriver.Acknowledger)
	if !ok {
		return nil, fmt.Errorf("%w (%s driver %T)", ErrAckUnsupported, o.driver.Name(), o.driver)
	}
	return a, nil
}

// Acknowledge records the receiver's answer for the event eventID inside
// tx, the caller's transaction (so that the business consequence of the
// answer, if any, commits with it). It is idempotent: once an answer is
// recorded, later ones for the same event change nothing and return nil;
// a SUCCESS arriving late, after a resend or after the ack became
// unacknowledged, is recorded. It returns an error wrapping ErrAckNotFound
// when no acknowledgment is awaited for eventID, and one wrapping
// ErrInvalidAck for a reason that cannot be stored (SanitizeAckReason makes
// any text storable).
func (o *Outbox) Acknowledge(ctx context.Context, tx *sql.Tx, eventID string, outcome AckOutcome) error {
	if tx == nil {
		return fmt.Errorf("%w: Acknowledge needs the caller's *sql.Tx, got nil", ErrInvalidAck)
	}
	ack, err := o.acknowledger()
	if err != nil {
		return err
	}
	u, err := uuid.Parse(eventID)
	if err != nil {
		return fmt.Errorf("outbox: acknowledge %s: not an event id: %w", quoteShort(eventID), ErrAckNotFound)
	}
	if reason := checkText(outcome.Reason, MaxAckReasonBytes); reason != "" {
		return fmt.Errorf("%w: Reason: %s", ErrInvalidAck, reason)
	}
	status := AckAcknowledged
	if outcome.Rejected {
		status = AckRejected
	}
	_, err = ack.AckAnswer(ctx, &outboxdriver.AckAnswerParams{Tx: tx, EventID: u.String(), Status: status, Reason: outcome.Reason})
	if err != nil {
		return fmt.Errorf("outbox: acknowledge %s: %w", u, err)
	}
	return nil
}

// attachAcks fills the Ack of the events that await one, with one query.
func (o *Outbox) attachAcks(ctx context.Context, events []*StoredEvent) error {
	ack, ok := o.driver.(outboxdriver.Acknowledger)
	if !ok || len(events) == 0 {
		return nil
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	rows, err := ack.AckGet(ctx, &outboxdriver.AckGetParams{IDs: ids})
	if errors.Is(err, ErrNotMigrated) {
		return nil // the ack table's migration has not run yet: no event awaits an answer
	}
	if err != nil {
		return err
	}
	for _, e := range events {
		if a := rows[e.ID]; a != nil {
			e.Ack = ackStateFromRow(a)
		}
	}
	return nil
}

// listByAck is List with ListFilter.Ack set: the page's ids come from the
// ack table, in Seq order; the other filters narrow the page.
func (o *Outbox) listByAck(ctx context.Context, f ListFilter, limit int) (*ListPage, error) {
	ack, err := o.acknowledger()
	if err != nil {
		return nil, fmt.Errorf("outbox: list: %w", err)
	}
	page := &ListPage{}
	after := f.After
	for {
		ids, err := ack.AckList(ctx, &outboxdriver.AckListParams{Status: f.Ack, AfterSeq: after, Limit: limit + 1})
		if err != nil {
			return nil, fmt.Errorf("outbox: list: %w", err)
		}
		for _, id := range ids {
			row, err := o.driver.EventGet(ctx, &outboxdriver.EventGetParams{ID: id})
			if errors.Is(err, ErrNotFound) {
				continue // purged meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("outbox: list: %w", err)
			}
			after = row.Seq
			if !f.matches(row) {
				continue
			}
			if len(page.Events) == limit {
				page.Next = page.Events[limit-1].Seq
				return page, o.attachAcks(ctx, page.Events)
			}
			page.Events = append(page.Events, readable(storedFromRow(row)))
		}
		if len(ids) <= limit {
			return page, o.attachAcks(ctx, page.Events)
		}
	}
}

// matches applies the filters other than Ack and the cursor to a row.
func (f ListFilter) matches(r *outboxdriver.EventRow) bool {
	return (f.Status == "" || r.Status == f.Status) && (f.Type == "" || r.Type == f.Type) &&
		(f.Key == "" || r.Key == f.Key) && (f.Topic == "" || r.Topic == f.Topic) &&
		(f.LastError == "" || r.LastError == f.LastError) &&
		(f.Since.IsZero() || !r.CreatedAt.Before(f.Since)) && (f.Until.IsZero() || r.CreatedAt.Before(f.Until))
}

// RetryUnacknowledged resends every event whose ack is unacknowledged and
// awaits its answer again (see Retry); it returns how many it resent.
func (o *Outbox) RetryUnacknowledged(ctx context.Context) (int64, error) {
	ack, err := o.acknowledger()
	if err != nil {
		return 0, fmt.Errorf("outbox: retry unacknowledged: %w", err)
	}
	var total int64
	for {
		// Retried events leave the unacknowledged state, so each page
		// starts from the beginning again.
		ids, err := ack.AckList(ctx, &outboxdriver.AckListParams{Status: AckUnacknowledged, Limit: 500})
		if err != nil {
			return total, fmt.Errorf("outbox: retry unacknowledged: %w", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		n, err := o.Retry(ctx, ids...)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil
		}
	}
}

// AckStats are the acknowledgment counters of Stats.
type AckStats struct {
	// Awaiting counts events whose answer has not come yet.
	Awaiting int64
	// Rejected counts events the receiver rejected.
	Rejected int64
	// Unacknowledged counts events resent MaxResends times without answer.
	Unacknowledged int64
	// OldestAwaitingAge is how long the oldest awaiting event has waited
	// since it was inserted.
	OldestAwaitingAge time.Duration
}

func (o *Outbox) ackStats(ctx context.Context) (*AckStats, error) {
	ack, ok := o.driver.(outboxdriver.Acknowledger)
	if !ok {
		return nil, nil
	}
	s, err := ack.AckStats(ctx, &outboxdriver.AckStatsParams{})
	if errors.Is(err, ErrNotMigrated) {
		return nil, nil // the ack table's migration has not run yet
	}
	if err != nil {
		return nil, err
	}
	out := &AckStats{Awaiting: s.Awaiting, Rejected: s.Rejected, Unacknowledged: s.Unacknowledged}
	if !s.OldestAwaiting.IsZero() {
		out.OldestAwaitingAge = max(0, s.Now.Sub(s.OldestAwaiting))
	}
	return out, nil
}

// insertAck converts a validated policy for the driver.
func insertAck(p *AckPolicy) *outboxdriver.InsertAck {
	return &outboxdriver.InsertAck{Deadline: p.Deadline, MaxResends: p.MaxResends,
		ResendBackoff: cmp.Or(p.ResendBackoff, p.Deadline)}
}
