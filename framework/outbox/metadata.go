package outbox

import (
	"context"
	"log/slog"
)

// reservedPrefix starts every header name the outbox sets itself.
const reservedPrefix = "outbox_"

// Metadata keys the relay sets on every published Watermill message, next to
// the event's own headers. The message UUID is the event id.
const (
	// MetadataEventID carries the event id (also the message UUID), for
	// brokers and consumers that only see headers.
	MetadataEventID = "outbox_event_id"
	// MetadataEventType carries Event.Type.
	MetadataEventType = "outbox_event_type"
	// MetadataKey carries Event.Key; broker modules use it as the partition
	// or message key.
	MetadataKey = "outbox_key"
	// MetadataCreatedAt carries Event.CreatedAt in RFC 3339 with nanoseconds.
	MetadataCreatedAt = "outbox_created_at"
	// MetadataResend counts the resends the receiver must get: "1" on the
	// first resend of an event awaiting a business acknowledgment (the
	// acknowledgment sweep, or Retry of such an event), "2" on the next,
	// and so on; absent before. Broker modules whose broker drops a message
	// id it has stored (NATS JetStream) deduplicate by the event id plus
	// this count (outboxbroker.DedupID), so a resend is delivered while a
	// relay's crash-republish of the same send is still dropped.
	MetadataResend = "outbox_resend"
)

type traceparentKey struct{}

type traceContext struct{ traceparent, tracestate string }

// ContextWithTraceparent returns a context carrying a W3C trace context that
// Insert copies into the event headers "traceparent" and "tracestate" when
// Config.Propagate is nil. Services using OpenTelemetry set Config.Propagate
// instead.
func ContextWithTraceparent(ctx context.Context, traceparent, tracestate string) context.Context {
	return context.WithValue(ctx, traceparentKey{}, traceContext{traceparent, tracestate})
}

func propagateFromContext(ctx context.Context, headers map[string]string) {
	tc, ok := ctx.Value(traceparentKey{}).(traceContext)
	if !ok || tc.traceparent == "" {
		return
	}
	headers["traceparent"] = tc.traceparent
	if tc.tracestate != "" {
		headers["tracestate"] = tc.tracestate
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
