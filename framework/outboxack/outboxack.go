// Package outboxack carries business acknowledgments over a broker: the
// receiver of an event inserted with outbox.Event.AwaitAck answers with a
// reply message on a reply topic, and the sender consumes that topic with
// Handler, which correlates each reply with its event by event id and
// records the outcome (outbox.Outbox.Acknowledge) in a database transaction
// of the sender.
//
// # Reply message format
//
// A reply is a Watermill message whose metadata say what it answers:
//
//	outbox_ack_event_id   the id of the event answered (a UUID; required)
//	outbox_ack_status     SUCCESS or REJECTED (case-insensitive; required)
//
// and whose payload is the receiver's reason as UTF-8 text (optional for
// SUCCESS; the explanation of a REJECTED). The reply's own UUID is free.
// NewReply builds one; Reply (a handler middleware for the receiver) sends
// one for every event its handler processed.
//
// Replies are untrusted input: a reply that names no event, an unknown
// event or an event inserted without AwaitAck, or an unknown status can
// never be recorded. Handler returns an error wrapping ErrInvalidReply (or
// outbox.ErrAckNotFound) for it, so Watermill's poison-queue middleware can
// set it aside, or, with Config.DropInvalid, logs and acknowledges it. A
// reason that is not valid UTF-8, holds NUL bytes or is longer than
// outbox.MaxAckReasonBytes is stored sanitized (outbox.SanitizeAckReason).
// A second reply for the same event is a no-op.
package outboxack

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outboxkit/framework/outbox"
)

// Metadata names of a reply message.
const (
	// MetadataEventID is the id of the event a reply answers.
	MetadataEventID = "outbox_ack_event_id"
	// MetadataStatus is StatusSuccess or StatusRejected.
	MetadataStatus = "outbox_ack_status"
)

// Reply statuses (MetadataStatus values).
const (
	// StatusSuccess: the receiver took the event into account.
	StatusSuccess = "SUCCESS"
	// StatusRejected: the receiver refused the event; the payload says why.
	StatusRejected = "REJECTED"
)

// ErrInvalidReply is wrapped by the error Handler and ParseReply return for
// a reply message that cannot be understood (no event id, an id that is
// not a UUID, an unknown status).
var ErrInvalidReply = errors.New("outboxack: invalid reply message")

// NewReply returns the reply message answering eventID with outcome.
func NewReply(eventID string, outcome outbox.AckOutcome) *message.Message {
	status := StatusSuccess
	if outcome.Rejected {
		status = StatusRejected
	}
	msg := message.NewMessage(watermill.NewUUID(), []byte(outcome.Reason))
	msg.Metadata.Set(MetadataEventID, eventID)
	msg.Metadata.Set(MetadataStatus, status)
	return msg
}

// ParseReply reads the event id and the outcome of a reply message. The
// reason is sanitized (outbox.SanitizeAckReason), so any payload gives a
// storable one. It returns an error wrapping ErrInvalidReply when the
// metadata do not make a reply.
func ParseReply(msg *message.Message) (eventID string, outcome outbox.AckOutcome, err error) {
	if msg == nil {
		return "", outcome, fmt.Errorf("%w: nil message", ErrInvalidReply)
	}
	eventID = strings.TrimSpace(msg.Metadata.Get(MetadataEventID))
	if eventID == "" {
		return "", outcome, fmt.Errorf("%w: message %s has no %s metadata", ErrInvalidReply, short(msg.UUID), MetadataEventID)
	}
	if len(eventID) > 64 {
		return "", outcome, fmt.Errorf("%w: message %s: %s is %d bytes, not an event id", ErrInvalidReply, short(msg.UUID), MetadataEventID, len(eventID))
	}
	switch status := strings.ToUpper(strings.TrimSpace(msg.Metadata.Get(MetadataStatus))); status {
	case StatusSuccess:
	case StatusRejected:
		outcome.Rejected = true
	default:
		return "", outcome, fmt.Errorf("%w: message %s: %s %s is not %s or %s", ErrInvalidReply, short(msg.UUID),
			MetadataStatus, short(status), StatusSuccess, StatusRejected)
	}
	outcome.Reason = outbox.SanitizeAckReason(string(msg.Payload))
	return eventID, outcome, nil
}

// short quotes s for an error message, cut after 64 bytes.
func short(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q...", s[:64])
	}
	return fmt.Sprintf("%q", s)
}

// Config configures Handler.
type Config struct {
	// Outbox records the answers. Required.
	Outbox *outbox.Outbox

	// DB opens the transaction each reply is recorded in. Nil means the
	// Outbox driver's database.
	DB *sql.DB

	// OnAnswer, when set, runs in the same transaction after the answer was
	// recorded (e.g. to mark the invoice accepted): both commit or neither.
	// An error rolls both back and fails the message (it is redelivered).
	// It also runs for a repeated answer, which Acknowledge ignored.
	OnAnswer func(ctx context.Context, tx *sql.Tx, eventID string, outcome outbox.AckOutcome) error

	// DropInvalid acknowledges (drops, after logging) a reply that can
	// never be recorded: unreadable metadata, or an event that awaits no
	// acknowledgment. Zero (false) returns the error instead, for a poison
	// queue middleware to handle; without one, Watermill redelivers it.
	DropInvalid bool

	// Logger receives a line per dropped or failed reply. Nil discards them.
	Logger *slog.Logger
}

// Handler returns the Watermill handler of a reply topic: for each reply
// it records the outcome in one transaction (see the package doc for the
// format and the handling of hostile replies). Database errors are returned,
// so that the reply is redelivered.
func Handler(cfg Config) (message.NoPublishHandlerFunc, error) {
	if cfg.Outbox == nil {
		return nil, fmt.Errorf("%w: outboxack.Config.Outbox must not be nil", outbox.ErrInvalidConfig)
	}
	if cfg.DB == nil {
		cfg.DB = cfg.Outbox.Driver().DB()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return func(msg *message.Message) error {
		err := record(msg.Context(), cfg, msg)
		if err == nil {
			return nil
		}
		permanent := errors.Is(err, ErrInvalidReply) || errors.Is(err, outbox.ErrAckNotFound)
		if permanent && cfg.DropInvalid {
			cfg.Logger.Warn("outboxack: reply dropped", "message_uuid", msg.UUID, "err", err)
			return nil
		}
		cfg.Logger.Warn("outboxack: reply not recorded", "message_uuid", msg.UUID, "err", err)
		return err
	}, nil
}

func record(ctx context.Context, cfg Config, msg *message.Message) (err error) {
	eventID, outcome, err := ParseReply(msg)
	if err != nil {
		return err
	}
	tx, err := cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outboxack: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := cfg.Outbox.Acknowledge(ctx, tx, eventID, outcome); err != nil {
		return err
	}
	if cfg.OnAnswer != nil {
		if err := cfg.OnAnswer(ctx, tx, eventID, outcome); err != nil {
			return fmt.Errorf("outboxack: OnAnswer for %s: %w", eventID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outboxack: commit: %w", err)
	}
	return nil
}

// Rejection is the error a receiver's handler returns, under the Reply
// middleware, to reject an event for good: the middleware answers REJECTED
// with Reason and acknowledges the event message.
type Rejection struct {
	Reason string
}

// Error implements error.
func (r *Rejection) Error() string { return "outboxack: rejected: " + r.Reason }

// Reject returns a *Rejection with reason.
func Reject(reason string) error { return &Rejection{Reason: reason} }

// Reply is the receiver's side: a handler middleware that answers every
// event message its handler processed, on replyTopic through publisher.
// A nil error answers SUCCESS; a *Rejection (see Reject) answers REJECTED
// with its reason and acknowledges the message; any other error answers
// nothing and fails the message (Watermill redelivers it; the sender
// resends it after its deadline anyway). The event id is the message UUID.
// Only messages carrying outbox.MetadataEventID are answered.
func Reply(publisher message.Publisher, replyTopic string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if msg.Metadata.Get(outbox.MetadataEventID) == "" {
				return out, err
			}
			var rej *Rejection
			switch {
			case err == nil:
				if perr := publisher.Publish(replyTopic, NewReply(msg.UUID, outbox.AckSuccess)); perr != nil {
					return nil, fmt.Errorf("outboxack: publish reply: %w", perr)
				}
			case errors.As(err, &rej):
				if perr := publisher.Publish(replyTopic, NewReply(msg.UUID, outbox.AckRejection(rej.Reason))); perr != nil {
					return nil, fmt.Errorf("outboxack: publish reply: %w", perr)
				}
				return out, nil
			}
			return out, err
		}
	}
}
