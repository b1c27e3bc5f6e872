package outboxdriver

import "context"

// Notifier is an optional interface: a driver that can wake relays when
// events are committed, so that they need not poll (e.g. PostgreSQL
// LISTEN/NOTIFY). Relays keep polling at RelayConfig.PollInterval as a
// fallback, so a lost notification only delays events.
type Notifier interface {
	// EventNotifications returns a channel that receives a value (coalesced:
	// several commits may produce one) after a transaction that inserted
	// events commits, and after the listener reconnects. It returns a nil
	// channel and nil error when the driver is not configured to notify. The
	// channel is closed when ctx ends.
	EventNotifications(ctx context.Context) (<-chan struct{}, error)
}
