package outbox

import (
	"errors"
	"fmt"

	"github.com/outboxkit/outboxkit/framework/outboxdriver"
)

// ErrInvalidConfig is wrapped by every configuration error returned by New,
// NewRelay and the drivers' constructors; the message names the field.
var ErrInvalidConfig = outboxdriver.ErrInvalidConfig

// ErrInvalidEvent is wrapped by an *EventError when an event fails
// validation at Insert (empty type or topic, bad id, reserved header, a text
// field or header that is not valid UTF-8, holds a NUL byte or is too long).
var ErrInvalidEvent = errors.New("outbox: invalid event")

// ErrEventTooLarge is wrapped by an *EventError when an event's payload is
// larger than Config.MaxPayloadBytes.
var ErrEventTooLarge = errors.New("outbox: event too large")

// ErrDuplicateEvent is wrapped by the error Insert returns when an event's
// explicit ID is already stored with a different type, topic, key or
// payload. The same ID with identical content is an idempotent no-op.
var ErrDuplicateEvent = outboxdriver.ErrDuplicateEvent

// ErrNotFound is returned by Get when no event has the given id.
var ErrNotFound = outboxdriver.ErrNotFound

// ErrNotMigrated is returned when the outbox table does not exist yet.
var ErrNotMigrated = outboxdriver.ErrNotMigrated

// EventError describes why Insert rejected an event. Nothing of the call was
// written: the caller's transaction is untouched and can still commit its
// other work or roll back.
type EventError struct {
	// Index is the position of the event in the Insert call.
	Index int
	// Field is the offending field, e.g. "Type" or "Payload".
	Field string
	// Reason says what is wrong.
	Reason string
	// Err is ErrInvalidEvent or ErrEventTooLarge.
	Err error
}

// Error implements error.
func (e *EventError) Error() string {
	return fmt.Sprintf("%v: event %d: %s: %s", e.Err, e.Index, e.Field, e.Reason)
}

// Unwrap returns ErrInvalidEvent or ErrEventTooLarge.
func (e *EventError) Unwrap() error { return e.Err }

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}
