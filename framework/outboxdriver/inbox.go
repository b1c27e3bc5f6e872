package outboxdriver

import (
	"context"
	"database/sql"
	"time"
)

// Inbox is the optional interface a driver implements to support
// consumer-side idempotency (package inbox). The inbox table records which
// events each named consumer has processed, with a unique (consumer,
// event_id) constraint; its name is derived from the driver's table name
// (e.g. "outbox_inbox").
type Inbox interface {
	// InboxInsert records (Consumer, EventID) inside Tx. It returns true when
	// the row is new and false when the event was already processed by that
	// consumer. When another transaction holds the same row uncommitted, it
	// waits for it: exactly one of two concurrent consumers gets true.
	InboxInsert(ctx context.Context, params *InboxInsertParams) (bool, error)

	// InboxMigrateUp creates the inbox table (idempotent).
	InboxMigrateUp(ctx context.Context, params *InboxMigrateUpParams) error

	// InboxPrune deletes at most Limit records processed before Before and
	// returns how many it deleted.
	InboxPrune(ctx context.Context, params *InboxPruneParams) (int64, error)
}

// InboxInsertParams are the parameters of Inbox.InboxInsert.
type InboxInsertParams struct {
	Tx       *sql.Tx
	Consumer string
	EventID  string
}

// InboxMigrateUpParams are the parameters of Inbox.InboxMigrateUp.
type InboxMigrateUpParams struct{}

// InboxPruneParams are the parameters of Inbox.InboxPrune.
type InboxPruneParams struct {
	Before time.Time
	Limit  int
}
