package outboxdriver

import "context"

// HeldClaimer is the claim protocol of drivers that can keep a transaction
// open cheaply (PostgreSQL, MySQL). A claim locks the rows inside a
// transaction that stays open while the relay publishes, and the outcome is
// recorded in that same transaction: each event is written once (its
// outcome) instead of twice (lease, then outcome), and a crashed relay's
// rows are free again as soon as its connection drops, without waiting for
// a lease to expire.
//
// Contract, in addition to the Driver's: while a HeldBatch is open, no other
// claim returns its rows nor any later pending row of the same non-empty keys
// (per-key exclusivity, e.g. key-scoped advisory locks held by the
// transaction), and an application INSERT never waits for the open
// transaction.
type HeldClaimer interface {
	// EventClaimHeld locks up to Limit ready events (ordered by Seq) in a new
	// transaction and returns them as a batch. A batch with no rows must
	// still be finished or aborted.
	EventClaimHeld(ctx context.Context, params *EventClaimBatchParams) (HeldBatch, error)
}

// HeldBatch is a claimed batch whose rows stay locked until Finish or Abort.
// Its methods run on the batch's own transaction and are not safe for
// concurrent use.
type HeldBatch interface {
	// Rows returns the claimed events ordered by Seq.
	Rows() []*EventRow

	// Finish records the delivered and failed events and commits. Claimed
	// events in neither list stay pending, unchanged. If Finish fails,
	// nothing is recorded and the events will be published again.
	Finish(ctx context.Context, delivered []string, failed []FailedAttempt) error

	// Abort rolls the transaction back: nothing is recorded.
	Abort() error
}
